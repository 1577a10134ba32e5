package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

func TestOffboardctlPrintsNoNATSSecret(t *testing.T) {
	o := &server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true, JetStream: true, StoreDir: t.TempDir(), Username: "alice", Password: "right"}
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	defer func() { s.Shutdown(); s.WaitForShutdown() }()
	s.ReadyForConnections(10 * time.Second)
	hp := strings.TrimPrefix(s.ClientURL(), "nats://")
	for _, c := range []struct{ url, leak string }{
		{"nats://TOKSECRET/rest@" + hp, "TOKSECRET"},
		{"nats://TOKSECRET,rest@" + hp, "TOKSECRET"},
		{"nats://alice:PWSECRET,b,c@" + hp, "PWSECRET"},
		{"nats://alice:4222,PWSECRET@" + hp, "4222,"},
		{"nats://alice:WRONG@" + hp, "WRONG"},
		{"nats://" + hp + "/?token=QUERYSECRET", "QUERYSECRET"},
	} {
		var buf bytes.Buffer
		code := run([]string{"--nats-url", c.url, "--connect-timeout", "2s", "status"}, io.Discard, &buf)
		t.Logf("%s: exit %d: %s", c.url, code, buf.String())
		if strings.Contains(buf.String(), c.leak) {
			t.Errorf("LEAK %q", c.leak)
		}
	}
	// A flag that lost its value (--nats-inbox-prefix "$UNSET") takes
	// the next flag's name, and the URL is left as an argument.
	for _, args := range [][]string{
		{"--nats-inbox-prefix", "--nats-url", "nats://alice:LOSTSECRET@" + hp, "status"},
		{"--nats-creds", "--nats-url", "nats://alice:LOSTSECRET@" + hp, "status"},
	} {
		var buf bytes.Buffer
		code := run(args, io.Discard, &buf)
		t.Logf("%s: exit %d: %s", args[0], code, buf.String())
		if code != exitUsage || strings.Contains(buf.String(), "LOSTSECRET") {
			t.Errorf("%s without its value: exit %d, want %d and no password: %s", args[0], code, exitUsage, buf.String())
		}
	}
}
