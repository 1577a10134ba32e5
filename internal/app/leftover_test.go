package app

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
)

// TestStopSaysHowManyRequestsItCancelled: the warning of a stop that
// cancelled requests under way says how many went back to the stream
// (before, only that some did).
func TestStopSaysHowManyRequestsItCancelled(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.WarnLevel)
	e := setup(t, envConfig{machines: 3, tenants: []string{"contoso"}, noStart: true, logger: zap.New(core),
		sim: mdesim.Options{Latency: time.Minute}}) // released by the simulator's Close
	e.opts.ShutdownTimeout = 100 * time.Millisecond
	e.start()
	for i, m := range e.tenants["contoso"].machines {
		id := "left-" + string(rune('a'+i))
		e.publish("mde.offboard.request.contoso", map[string]any{"requestId": id, "machineId": m.ID}, id)
	}
	eventually(t, 10*time.Second, "three requests under way", func() bool {
		return metricValue(t, e, "mde_offboard_in_flight_requests", map[string]string{"tenant": "contoso"}) == 3
	})
	if err := e.app.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	warned := logs.FilterMessageSnippet("requests still under way at the stop were cancelled").All()
	if len(warned) != 1 {
		t.Fatalf("%d warnings of cancelled requests, want 1", len(warned))
	}
	if msg := warned[0].ContextMap()["error"]; !strings.Contains(msg.(string), "3 requests still under way") {
		t.Errorf("warning %q does not say 3 requests were cancelled", msg)
	}
}
