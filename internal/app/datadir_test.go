package app

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestDataDirTakenByOneWorker: two workers started on one --data-dir (the
// embedded server on a free port each, or on two addresses) would run two
// NATS servers on one store, each writing the streams' files the other
// reads. The second is refused, naming the directory, and the directory
// is free again once the first has stopped.
func TestDataDirTakenByOneWorker(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, noStart: true})
	start := func() (*App, error) {
		o := e.opts
		o.Registry = prometheus.NewRegistry()
		a, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		return a, a.Start(t.Context())
	}
	first, err := start()
	if err != nil {
		t.Fatal(err)
	}
	err = startErr(t, e.opts)
	if !strings.Contains(err.Error(), e.opts.DataDir) || !strings.Contains(err.Error(), "another worker") {
		t.Errorf("second start on one data dir: error %q does not name the directory and say another worker has it", err)
	}
	if err := first.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	again, err := start()
	if err != nil {
		t.Fatalf("start on the data dir the first worker left: %v", err)
	}
	if err := again.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestEmbeddedStoreRefusedNamesTheDataDir: an embedded server that cannot
// start JetStream on --data-dir (its jetstream directory a file, the
// store unreadable) fails the start naming the directory. Before, the
// error was the server's own, "Can't start JetStream: storage directory
// is not a directory", which does not say which.
func TestEmbeddedStoreRefusedNamesTheDataDir(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, noStart: true})
	if err := os.MkdirAll(e.opts.DataDir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.opts.DataDir, "jetstream"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	err := startErr(t, e.opts)
	if !strings.Contains(err.Error(), "JetStream") || !strings.Contains(err.Error(), "data dir "+e.opts.DataDir) {
		t.Errorf("start: %v\nwant JetStream's refusal, naming the data dir %s", err, e.opts.DataDir)
	}
}
