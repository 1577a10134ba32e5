package app

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/contoso-secops/mde-offboard/internal/mde"
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
	// Each call reached the simulator: a request still before its call
	// would go back to the stream at once, not be cancelled.
	eventually(t, 10*time.Second, "three offboard calls under way", func() bool {
		return len(slices.DeleteFunc(e.sim.Calls(), func(c mdesim.Call) bool { return c.API != mde.APIOffboard })) == 3
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
