package main

import (
	"context"
	"fmt"
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := demo(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	return 0
}

// demo starts the simulator and the worker, publishes the sample batch,
// prints the results as they arrive, then a summary.
func demo(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "mde-offboard-demo-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()

	env, err := start(ctx, dir)
	if err != nil {
		return err
	}
	defer env.stop()
	fmt.Printf("simulator   %s\nNATS        %s (embedded, JetStream)\nmetrics     http://%s/metrics\n"+
		"limits      offboard 5/1s and 25/10s per tenant (the real 100/1m and 1500/1h, 60x faster)\n\n",
		env.base, env.app.NATSURL(), env.app.HTTPAddr())

	nc, err := nats.Connect(env.app.NATSURL())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}

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
	cc.Stop()
	return campaign(ctx, os.Stdout, js)
}
