package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// TestStreamReplicasOnALoneServerNamesTheFlag: a --stream-replicas above
// 1 on a NATS server that is not clustered fails the start, exit 1, in
// one line naming the flag. The server's refusal came once per stream,
// five times over in one message ("replicas > 1 not supported in
// non-clustered mode"), naming no setting.
func TestStreamReplicasOnALoneServerNamesTheFlag(t *testing.T) {
	srv := natstest.Start(t, 1)
	var stderr lockedBuffer
	exit := make(chan int, 1)
	go func() {
		exit <- run([]string{"--config", tenantsFile(t), "--nats-url", srv.URLs(), "--stream-replicas", "3",
			"--listen", "127.0.0.1:0", "--log-format", "console"}, io.Discard, &stderr)
	}()
	select {
	case code := <-exit:
		out := stderr.String()
		if code != 1 || strings.Count(out, "\n") != 1 || !strings.Contains(out, "--stream-replicas 3") || strings.Count(out, "non-clustered") > 1 {
			t.Errorf("exit %d, stderr:\n%s\nwant 1 and one line naming --stream-replicas 3", code, out)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("still starting after 20s")
	}
}
