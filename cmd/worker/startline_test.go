package main

import (
	"encoding/json"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/queue"
)

// TestStartLineNamesTheReplica: the line that says the worker started
// names its version, its replica id, the NATS server and the subject
// prefix. Without --replica-id the id is made up at start (host, process
// id, a random part), and it was logged nowhere, while the other
// replicas' lines name replicas by it (a tenant held for another
// replica's file) and the presence bucket keys them by it: no line told
// which process a name was. Nor did any line give the version a
// rolling update was running.
func TestStartLineNamesTheReplica(t *testing.T) {
	var stderr lockedBuffer
	exit := make(chan int, 1)
	httpAddr, natsAddr := freePort(t), freePort(t)
	args := []string{"--config", tenantsFile(t), "--data-dir", t.TempDir(), "--embedded-listen", natsAddr, "--listen", httpAddr}
	go func() { exit <- run(args, io.Discard, &stderr) }()
	waitReady(t, httpAddr, exit)
	defer func() {
		if code := sigterm(t, exit, 20*time.Second); code != 0 {
			t.Errorf("exit %d after SIGTERM", code)
		}
	}()
	waitLog(t, &stderr, exit, `"msg":"worker started"`)
	var started map[string]any
	for line := range strings.SplitSeq(stderr.String(), "\n") {
		if strings.Contains(line, `"msg":"worker started"`) {
			if err := json.Unmarshal([]byte(line), &started); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, field := range []string{"version", "replica", "nats", "subject_prefix"} {
		if s, _ := started[field].(string); s == "" {
			t.Errorf("the start line has no %s: %v", field, started)
		}
	}
	if got := started["nats"]; got != "nats://"+natsAddr {
		t.Errorf("nats = %v, want nats://%s", got, natsAddr)
	}

	nc, err := nats.Connect("nats://" + natsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(t.Context(), queue.BucketPresence)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.Keys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := started["replica"].(string); !slices.Contains(keys, id) {
		t.Errorf("replica %v is not among the presence bucket's keys %v", started["replica"], keys)
	}
}
