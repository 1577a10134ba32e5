package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/peterbourgon/ff/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/contoso-secops/mde-offboard/internal/app"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	var (
		o         app.Options
		logLevel  = fs.String("log-level", "info", "debug, info, warn or error")
		logFormat = fs.String("log-format", "json", "json or console")
		stopAfter = fs.Duration("shutdown-timeout", 30*time.Second, "how long requests under way may take to finish on SIGTERM")
	)
	fs.StringVar(&o.ConfigPath, "config", "worker.yaml", "tenants file")
	fs.StringVar(&o.NATSURL, "nats-url", "", "NATS server URL; empty starts an embedded server with JetStream")
	fs.StringVar(&o.NATSCreds, "nats-creds", "", "NATS credentials file")
	fs.StringVar(&o.DataDir, "data-dir", "./data", "embedded NATS server storage")
	fs.StringVar(&o.EmbeddedListen, "embedded-listen", "127.0.0.1:4222", "client address of the embedded NATS server")
	fs.StringVar(&o.SubjectPrefix, "subject-prefix", "mde.offboard", "prefix of every subject")
	fs.StringVar(&o.Listen, "listen", ":9090", "address of /metrics, /healthz and /readyz")
	fs.BoolVar(&o.NoSetup, "no-setup", false, "do not create or update streams and consumers (use deploy/ definitions)")
	fs.DurationVar(&o.Queue.Duplicates, "duplicate-window", 24*time.Hour, "duplicate window of the request and result streams")
	fs.DurationVar(&o.Queue.ResultsMaxAge, "results-max-age", 0, "how long results are kept (0: forever)")
	fs.DurationVar(&o.Queue.LedgerTTL, "ledger-ttl", 30*24*time.Hour, "how long a completed request id is remembered")
	fs.DurationVar(&o.Queue.AckWait, "ack-wait", time.Minute, "how long a request may go without progress before redelivery")
	fs.IntVar(&o.Queue.Replicas, "stream-replicas", 1, "stream replicas (clustered NATS)")
	fs.DurationVar(&o.QuotaMargin, "quota-margin", 500*time.Millisecond, "added to the call times other replicas wrote in the quota journal, for clock skew")
	fs.DurationVar(&o.Queue.QuotaHistory, "quota-history", 2*time.Hour, "how long the quota journal keeps entries; more than the longest window, 1.5 × the call timeout and the margin")
	fs.DurationVar(&o.CallTimeout, "call-timeout", 30*time.Second, "bound of one API call, its token included")
	if err := ff.Parse(fs, args, ff.WithEnvVars()); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 2
	}
	log, err := newLogger(*logLevel, *logFormat)
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 2
	}
	defer func() { _ = log.Sync() }()
	o.Logger = log

	a, err := app.New(o)
	if err != nil {
		log.Error("configuration", zap.Error(err))
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := a.Start(ctx); err != nil {
		log.Error("start", zap.Error(err))
		return 1
	}
	<-ctx.Done()
	log.Info("stopping: finishing requests under way", zap.Duration("timeout", *stopAfter))
	sctx, cancel := context.WithTimeout(context.Background(), *stopAfter)
	defer cancel()
	if err := a.Stop(sctx); err != nil {
		log.Error("stop", zap.Error(err))
		return 1
	}
	log.Info("stopped")
	return 0
}

func newLogger(level, format string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	cfg := zap.NewProductionConfig()
	switch format {
	case "json":
	case "console":
		cfg.Encoding = "console"
		cfg.EncoderConfig = zap.NewDevelopmentEncoderConfig()
	default:
		return nil, fmt.Errorf("--log-format %q: want json or console", format)
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.EncoderConfig.TimeKey = "ts"
	cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	return cfg.Build()
}
