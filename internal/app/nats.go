package app

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/queue"
)

// connect starts the embedded server when no URL is given, then connects
// to NATS.
func (a *App) connect() error {
	url := a.opts.NATSURL
	if url == "" {
		if err := a.takeDataDir(); err != nil {
			return err
		}
		ns, err := queue.StartEmbedded(queue.EmbeddedOptions{StoreDir: a.opts.DataDir, Listen: a.opts.EmbeddedListen, MaxStore: a.embeddedMaxStore})
		if se := (*queue.StorageError)(nil); errors.As(err, &se) {
			return fmt.Errorf("data dir %s: %w", a.opts.DataDir, err)
		}
		if le := (*queue.ListenError)(nil); errors.As(err, &le) {
			// The server's own words named no setting: a NATS server
			// already running on the default port (one of the
			// operator's own) is the likely case, and its URL the fix.
			if le.InUse {
				return fmt.Errorf("--embedded-listen %s: %w: another NATS server (or another worker's embedded one) listens there; to use it, give its URL as --nats-url, else give another --embedded-listen", le.Addr, err)
			}
			return fmt.Errorf("--embedded-listen %s: %w", le.Addr, err)
		}
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
	a.connected = a.natsConnectedGauge()
	a.slow = &slowConsumers{log: a.log, clock: a.opts.Clock, reports: a.slowConsumersCounter()}
	nc, err := nats.Connect(url, a.natsOptions()...)
	if err != nil {
		return fmt.Errorf("connect to NATS at %s: %w%s", queue.RedactURLs(url), err, a.opts.natsConn().NoTLSHint(err))
	}
	a.nc = nc
	a.setConnected(true)
	a.life.add("NATS connection", a.drainNATS)
	if err := queue.CheckReplies(nc, 5*time.Second); err != nil {
		return err
	}
	if mp := nc.MaxPayload(); mp < queue.MinMaxPayload {
		return fmt.Errorf("the NATS server's max_payload is %d bytes; the worker needs at least %d (a request of 64 KiB with its headers, its dead letter, a result): raise max_payload", mp, queue.MinMaxPayload)
	}
	if a.js, err = jetstream.New(nc); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	return nil
}

// natsOptions are the connection's options: reconnect for ever, notice a
// silent connection within a few pings, and report every change of state
// in the log and in mde_offboard_nats_connected.
func (a *App) natsOptions() []nats.Option {
	var closeOnce sync.Once
	o := []nats.Option{
		nats.Name("mde-offboard-worker"),
		nats.MaxReconnects(-1),
		// A server back from a restart is found within half a second.
		nats.ReconnectWait(500 * time.Millisecond),
		// A connection gone silent is closed after two pings unanswered,
		// and another server looked for.
		nats.PingInterval(a.opts.PingInterval),
		nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			a.setConnected(false)
			if err != nil { // nil: we closed the connection ourselves
				a.log.Warn("NATS disconnected", zap.Error(err))
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) {
			a.setConnected(true)
			a.log.Info("NATS reconnected")
			if r := a.routed.Load(); r != nil {
				// The requests published while it was away woke nobody.
				r.Reconnected()
			}
			if !a.opts.NoSetup {
				a.consumerLost() // a lone server restarted comes back without the tenants' consumers
			}
		}),
		// Errors NATS reports on its own (a permission refused, a slow
		// subscription) go to the log, not as a raw line on stderr.
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrSlowConsumer) && sub != nil {
				dropped, _ := sub.Dropped()
				a.slow.seen(sub.Subject, dropped)
				return
			}
			a.log.Warn("NATS reported an error", zap.Error(err))
		}),
		nats.ClosedHandler(func(nc *nats.Conn) {
			a.setConnected(false)
			if err := a.closedForGood(nc); err != nil {
				a.log.Error("NATS connection lost: the worker serves nothing until it is restarted (/healthz answers 503)", zap.Error(err))
				a.goneOnce.Do(func() { close(a.gone) })
			}
			closeOnce.Do(func() { close(a.ncClosed) })
		}),
	}
	return append(o, a.opts.natsConn().Options()...)
}

// Gone is closed once the client closed the connection to NATS for good
// while the worker was not stopping: nothing but a restart makes it
// again (closedForGood). GoneError then says why.
func (a *App) Gone() <-chan struct{} { return a.gone }

// GoneError is why the connection to NATS was closed for good; nil while
// it was not.
func (a *App) GoneError() error { return a.natsClosed() }

// natsClosed is closedForGood of the worker's connection.
func (a *App) natsClosed() error { return a.closedForGood(a.nc) }

// closedForGood is the error of a connection to NATS that the client
// closed for good while the worker was not stopping: the server refused
// its credentials twice on reconnecting (a password or user JWT rotated,
// revoked or expired), or answered with an error the client does not
// reconnect after. Nothing makes it again but a restart. Nil otherwise.
func (a *App) closedForGood(nc *nats.Conn) error {
	if nc == nil || !nc.IsClosed() || a.stopping.Load() {
		return nil
	}
	if err := nc.LastError(); err != nil {
		return fmt.Errorf("the NATS connection was closed for good: %w: restart the worker", err)
	}
	return errors.New("the NATS connection was closed for good: restart the worker")
}

// natsConn is the connection's credentials and TLS settings.
func (o Options) natsConn() queue.Conn {
	return queue.Conn{URL: o.NATSURL, Creds: o.NATSCreds, TLSCA: o.NATSTLSCA, TLSCert: o.NATSTLSCert, TLSKey: o.NATSTLSKey,
		InboxPrefix: o.NATSInboxPrefix, SubjectPrefix: o.SubjectPrefix}
}

// setConnected sets mde_offboard_nats_connected.
func (a *App) setConnected(up bool) {
	v := 0.0
	if up {
		v = 1
	}
	a.connected.Set(v)
	if a.onConnChange != nil {
		a.onConnChange(up)
	}
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

// slowConsumers counts and logs the reports of a subscription that fell
// behind: past its pending limits (the client's defaults: 512k messages,
// 64 MiB) the client drops its messages and reports it once, then again
// only after the subscription took a message. One that stays just behind
// its publishers is so reported about once per message it takes: every
// report is counted, and a line logged at most once a minute.
//
// What a drop costs depends on the subscription: the requests' wake-ups
// are looked for again at once, then at most every 5 s while drops go on
// (queue.Router), a key-value watch or the journals' feeds (ordered
// consumers) fetch what they missed, a question of another replica or
// of offboardctl is asked again or times out.
type slowConsumers struct {
	log     *zap.Logger
	clock   clockwork.Clock
	reports prometheus.Counter

	mu   sync.Mutex
	next time.Time // when a line may be logged again
	held int       // reports since the last line, not logged
}

// slowConsumerLine is the message of the line logged.
const slowConsumerLine = "a NATS subscription fell behind: the client dropped messages (slow consumer)"

// slowConsumerEvery is how often a line is logged at most.
const slowConsumerEvery = time.Minute

// seen counts a report of the subscription on subject, which has had
// dropped messages dropped so far, and logs it unless a line was logged
// within slowConsumerEvery.
func (s *slowConsumers) seen(subject string, dropped int) {
	s.reports.Inc()
	s.mu.Lock()
	now := s.clock.Now()
	s.held++
	if now.Before(s.next) {
		s.mu.Unlock()
		return
	}
	held := s.held
	s.held, s.next = 0, now.Add(slowConsumerEvery)
	s.mu.Unlock()
	s.log.Warn(slowConsumerLine, zap.String("subject", subject), zap.Int("dropped", dropped),
		zap.Int("reports_since_last_line", held))
}
