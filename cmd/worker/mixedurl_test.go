package main

import (
	"bytes"
	"io"
	"testing"
)

// TestWebsocketAndOtherURLsTogetherAreRefused: the client library takes
// a server list of websocket URLs or of others, not both: --check-config
// said valid, and the start failed once connecting, exit 1, as a server
// down would. Refused before anything starts, exit 2, without the URLs'
// passwords.
func TestWebsocketAndOtherURLsTogetherAreRefused(t *testing.T) {
	for _, url := range []string{"ws://alice:s3cret@a:80,nats://b:4222", "nats://a:4222, wss://alice:s3cret@b:443", "b:4222,ws://a:80"} {
		refusedInOneLine(t, "--nats-url "+url,
			[]string{"--config", "../../deploy/worker.yaml", "--nats-url", url, "--listen", "127.0.0.1:0"},
			[]string{"--skip-file-checks"}, []string{"websocket"}, "s3cret")
	}
	// One kind alone is taken.
	var stderr bytes.Buffer
	if code := run([]string{"--config", "../../deploy/worker.yaml", "--nats-url", "ws://a:80,wss://b:443", "--check-config", "--skip-file-checks"}, io.Discard, &stderr); code != 0 {
		t.Errorf("websocket URLs alone: exit %d, %s", code, stderr.String())
	}
}
