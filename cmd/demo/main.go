package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/offboard"
)

func main() { os.Exit(run()) }

func run() int {
	switch err := parseArgs(os.Args[1:], os.Stdout); {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case err != nil:
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return exitStatus(ctx, demo(ctx), os.Stderr)
}

// exitStatus reports how the demo ended on stderr and gives its exit
// status: 130 when Ctrl-C or SIGTERM (ctx's end) cut it short, as a
// shell gives after Ctrl-C, whatever error the step it was at ended
// with; 1 when it failed.
func exitStatus(ctx context.Context, err error, stderr io.Writer) int {
	switch {
	case err == nil:
		return 0
	case ctx.Err() != nil:
		fmt.Fprintln(stderr, "demo: interrupted, stopped")
		return 130
	default:
		fmt.Fprintln(stderr, "demo:", err)
		return 1
	}
}

const usage = `Usage: demo (or: make demo)

Runs the worker's main job end to end on this machine: an embedded NATS
server, the Defender simulator, the worker and a sample batch of requests,
each result printed as it arrives; then the guards, a budget, a pause and a
campaign. It takes no arguments.

Environment:
  DEMO_KEEP=1  leave the worker, NATS and the simulator running after the
               summary, until Ctrl-C
`

// parseArgs accepts --help (the usage goes to out, and the error is
// flag.ErrHelp) and nothing else: the demo takes no arguments.
func parseArgs(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		_, _ = io.WriteString(out, usage)
		return err
	case err != nil:
		return fmt.Errorf("%w (see --help)", err)
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected argument %q: the demo takes none (see --help)", fs.Arg(0))
	}
	return nil
}

// demo starts the simulator and the worker, publishes the sample batch,
// prints the results as they arrive and a summary, then shows the guards,
// a budget, a pause and a campaign.
func demo(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "mde-offboard-demo-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()

	e, err := start(ctx, dir)
	if err != nil {
		return err
	}
	defer e.stop()
	fmt.Printf("simulator   %s\nNATS        %s (embedded, JetStream)\nmetrics     http://%s/metrics\n"+
		"limits      %s\n\n",
		e.base, e.app.NATSURL(), e.app.HTTPAddr(), limitsLine())

	nc, err := nats.Connect(e.app.NATSURL())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if err := sampleRun(ctx, js, e); err != nil {
		return err
	}
	for _, part := range []func(context.Context, io.Writer, jetstream.JetStream, *env) error{guardsPart, budgetPart, pausePart} {
		if err := part(ctx, os.Stdout, js, e); err != nil {
			return err
		}
	}
	if err := campaignPart(ctx, os.Stdout, js, e); err != nil {
		return err
	}
	keep(ctx, os.Stdout, e)
	return nil
}

// sampleRun publishes the sample batch, prints its results as they arrive
// and then the summary.
func sampleRun(ctx context.Context, js jetstream.JetStream, env *env) error {
	batch := sample(env.tenants)
	fmt.Printf("Sample batch: %d requests (%d distinct, one a duplicate) for %d results, printed as they arrive\n",
		len(batch.msgs), batch.results, batch.results)
	table := newResultTable(os.Stdout, batch.msgs)
	cc, err := table.follow(ctx, js, offboard.Subjects{}.Result(">"), jetstream.DeliverAllPolicy)
	if err != nil {
		return err
	}
	defer cc.Stop()
	if err := batch.publish(ctx, js); err != nil {
		return err
	}
	if err := table.wait(ctx, batch.results, 2*time.Minute); err != nil {
		return err
	}
	table.summary(env)
	return nil
}
