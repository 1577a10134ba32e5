package worker

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// TestSourcesStopAtTheFirstFailure: with NATS gone, making the tenants'
// sources fails after about one lookup's timeout, not after a timeout for
// every sixteen tenants.
func TestSourcesStopAtTheFirstFailure(t *testing.T) {
	t.Parallel()
	c := natstest.Start(t, 1)
	nc, _ := c.Connect(t, nats.MaxReconnects(-1))
	const timeout = 200 * time.Millisecond
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(timeout))
	if err != nil {
		t.Fatal(err)
	}
	router, err := queue.NewRouter(nc, queue.Settings{}.WithDefaults().Subjects)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = router.Close() })
	c.Shutdown(0)

	w := &Worker{opts: Options{JS: js, Router: router, Poll: time.Second}}
	tenants := make([]*Tenant, 160) // ten rounds of sixteen
	for i := range tenants {
		tenants[i] = &Tenant{Config: &config.Tenant{Name: fmt.Sprintf("t%03d", i)}}
	}
	start := time.Now()
	_, err = w.sources(t.Context(), tenants)
	took := time.Since(start)
	if err == nil {
		t.Fatal("sources made with NATS down")
	}
	// Going on after the first failure takes ten timeouts.
	if took > 5*timeout {
		t.Errorf("failed after %v (%v), where one lookup times out after %v", took, err, timeout)
	}
}
