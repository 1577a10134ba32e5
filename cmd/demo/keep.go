package main

import (
	"context"
	"fmt"
	"io"
	"os"
)

// keepRunning says whether DEMO_KEEP asks the demo to leave everything
// running after its summary.
func keepRunning() bool {
	v := os.Getenv("DEMO_KEEP")
	return v != "" && v != "0"
}

// keep prints how to reach the running worker, NATS and the simulator, and
// waits for Ctrl-C (ctx's end). Without DEMO_KEEP it says how to ask for it.
func keep(ctx context.Context, out io.Writer, e *env) {
	if !keepRunning() {
		fmt.Fprintln(out, "\nDone. DEMO_KEEP=1 make demo leaves the worker, NATS and the simulator running to look around.")
		return
	}
	fmt.Fprintf(out, "\nStill running (DEMO_KEEP=1) until Ctrl-C:\n"+
		"  worker      http://%[1]s/metrics  (also /healthz, /readyz)\n"+
		"  NATS        %[2]s\n"+
		"  simulator   %[3]s\n"+
		"Try, from this repository in another terminal:\n"+
		"  curl -s http://%[1]s/metrics | grep -E '^mde_offboard_(results_total|held_requests|budget_remaining)'\n"+
		"  go run ./cmd/offboardctl --nats-url %[2]s status\n"+
		"  go run ./cmd/offboardctl --nats-url %[2]s pause woodgrove --reason test\n",
		e.app.HTTPAddr(), e.app.NATSURL(), e.base)
	<-ctx.Done()
	fmt.Fprintln(out, "\nstopping")
}
