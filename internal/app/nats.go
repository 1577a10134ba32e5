package app

import (
	"context"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/queue"
)

// connect starts the embedded server when no URL is given, then connects
// to NATS.
func (a *App) connect() error {
	url := a.opts.NATSURL
	if url == "" {
		ns, err := queue.StartEmbedded(queue.EmbeddedOptions{StoreDir: a.opts.DataDir, Listen: a.opts.EmbeddedListen})
		if err != nil {
			return err
		}
		a.ns = ns
		a.life.add("embedded NATS server", func(context.Context) error {
			ns.Shutdown()
			ns.WaitForShutdown()
			return nil
		})
		url = ns.ClientURL()
		a.log.Info("embedded NATS server started", zap.String("url", url), zap.String("data_dir", a.opts.DataDir))
	}
	var closeOnce sync.Once
	natsOpts := []nats.Option{
		nats.Name("mde-offboard-worker"),
		nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil: we closed the connection ourselves
				a.log.Warn("NATS disconnected", zap.Error(err))
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { a.log.Info("NATS reconnected") }),
		nats.ClosedHandler(func(*nats.Conn) { closeOnce.Do(func() { close(a.ncClosed) }) }),
	}
	if a.opts.NATSCreds != "" {
		natsOpts = append(natsOpts, nats.UserCredentials(a.opts.NATSCreds))
	}
	nc, err := nats.Connect(url, natsOpts...)
	if err != nil {
		return fmt.Errorf("connect to NATS: %w", err)
	}
	a.nc = nc
	a.life.add("NATS connection", a.drainNATS)
	if a.js, err = jetstream.New(nc); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	return nil
}

// drainNATS drains the connection and waits for its ClosedHandler; when
// ctx ends first, it closes the connection.
func (a *App) drainNATS(ctx context.Context) error {
	err := a.nc.Drain()
	if err != nil {
		a.nc.Close()
	}
	select {
	case <-a.ncClosed:
		return err
	case <-ctx.Done():
		a.nc.Close()
		return fmt.Errorf("drain: %w", ctx.Err())
	}
}
