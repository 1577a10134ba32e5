package app

import (
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/queue"
)

// The defaults of Options. cmd/worker shows the same values as its flags'
// defaults: they are defined here only.
const (
	DefaultSubjectPrefix   = "mde.offboard"
	DefaultListen          = ":9090"
	DefaultDataDir         = "./data"
	DefaultEmbeddedListen  = "127.0.0.1:4222"
	DefaultQuotaMargin     = queue.DefaultQuotaMargin
	DefaultShutdownTimeout = 30 * time.Second
	// DefaultMaxRequests bounds the requests a worker works on at once
	// over all its tenants (Options.MaxRequests). A thousand tenants at
	// 100 calls a minute need about 1700 calls/s; 512 requests under way
	// carry that up to about 0.3 s per call, where 1024 added 20-30 MiB
	// at full load and no throughput on two cores (README, Tenants1000).
	DefaultMaxRequests = 512
	// DefaultPingInterval is how often the connection to NATS is checked
	// (Options.PingInterval). A connection gone silent without being
	// closed (a partition, a node lost without a word) is noticed after
	// three: within half a minute, where the client library's two
	// minutes took four or more, while the worker counted itself
	// connected and ready.
	DefaultPingInterval = 10 * time.Second
)

// StopReserve is how long Stop gives the steps after the requests under
// way (writing the quota journal's last entries, closing the HTTP server,
// draining NATS, stopping the embedded server): Stop's time cap is
// ShutdownTimeout plus this.
const StopReserve = 15 * time.Second

// withDefaults fills in the zero values.
func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Clock == nil {
		o.Clock = clockwork.NewRealClock()
	}
	if o.SubjectPrefix == "" {
		o.SubjectPrefix = DefaultSubjectPrefix
	}
	if o.Listen == "" {
		o.Listen = DefaultListen
	}
	if o.DataDir == "" {
		o.DataDir = DefaultDataDir
	}
	if o.EmbeddedListen == "" {
		o.EmbeddedListen = DefaultEmbeddedListen
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = mde.DefaultTimeout
	}
	if o.QuotaMargin <= 0 {
		o.QuotaMargin = DefaultQuotaMargin
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
	if o.PingInterval <= 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.MaxRequests == 0 {
		o.MaxRequests = DefaultMaxRequests
	}
	return o
}
