package queue

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/contoso-secops/mde-offboard/internal/testwait"
)

// traceLog keeps what a NATS server logs, its protocol traces included,
// and tells closed of each client connection closed.
type traceLog struct {
	mu     sync.Mutex
	lines  []string
	closed chan struct{}
}

func (l *traceLog) add(format string, v ...any) {
	line := fmt.Sprintf(format, v...)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
	if strings.Contains(line, "Client connection closed") {
		select {
		case l.closed <- struct{}{}:
		default:
		}
	}
}

func (l *traceLog) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func (l *traceLog) Noticef(format string, v ...any) { l.add(format, v...) }
func (l *traceLog) Warnf(format string, v ...any)   { l.add(format, v...) }
func (l *traceLog) Fatalf(format string, v ...any)  { l.add(format, v...) }
func (l *traceLog) Errorf(format string, v ...any)  { l.add(format, v...) }
func (l *traceLog) Debugf(format string, v ...any)  { l.add(format, v...) }
func (l *traceLog) Tracef(format string, v ...any)  { l.add(format, v...) }

// jwt is shaped as a user JWT: three base64url parts joined by '.'.
const jwt = "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJzdWIiOiJVQUJDIn0.c2lnbmF0dXJl"

// nscCreds is a credentials file as nsc writes it, with jwt and seed.
func nscCreds(seed string) string {
	return "-----BEGIN NATS USER JWT-----\n" + jwt + "\n------END NATS USER JWT------\n\n" +
		"************************* IMPORTANT *************************\n\n" +
		"-----BEGIN USER NKEY SEED-----\n" + seed + "\n------END USER NKEY SEED------\n"
}

// tracedServer starts a NATS server without authentication that logs
// its protocol traces, CONNECT lines included, into the returned log.
func tracedServer(t *testing.T) (*server.Server, *traceLog) {
	t.Helper()
	logs := &traceLog{closed: make(chan struct{}, 16)}
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, Trace: true, Debug: true})
	if err != nil {
		t.Fatal(err)
	}
	s.SetLogger(logs, true, true)
	go s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("not ready")
	}
	return s, logs
}

// userSeed is a new user's nkey seed.
func userSeed(t *testing.T) []byte {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	return seed
}

// A credentials file whose user JWT is missing (an nkey seed alone, or a
// JWT and a seed without the lines nsc writes around them) is refused
// by Check, naming the setting: the client library sends what it takes
// for the JWT, the seed included, in the clear to the server, whose
// protocol trace writes it down. A file as nsc writes it passes.
func TestCheckRefusesCredentialsWithoutAUserJWT(t *testing.T) {
	t.Parallel()
	seed := userSeed(t)
	decoratedSeed := "-----BEGIN USER NKEY SEED-----\n" + string(seed) + "\n------END USER NKEY SEED------\n"

	s, logs := tracedServer(t)

	dir := t.TempDir()
	for i, content := range []string{
		string(seed) + "\n",
		decoratedSeed,
		jwt + "\n" + string(seed) + "\n",
	} {
		path := filepath.Join(dir, fmt.Sprintf("user%d.creds", i))
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		c := Conn{URL: s.ClientURL(), Creds: path}
		err := c.Check()
		if err == nil {
			// What the worker and offboardctl do once Check passes.
			if nc, err := nats.Connect(c.URL, c.Options()...); err == nil {
				nc.Close()
			}
		} else if msg := err.Error(); !strings.Contains(msg, "--nats-creds") || strings.Contains(msg, string(seed)) || strings.Contains(msg, path) {
			t.Errorf("file %d: Check = %q, want the setting named, neither the path nor the seed", i, msg)
		}
		if err == nil {
			t.Errorf("file %d: Check = nil, want the file refused", i)
		}
	}
	if strings.Contains(logs.text(), string(seed)) || strings.Contains(logs.text(), string(seed[2:20])) {
		t.Errorf("the server's log holds the seed:\n%s", logs.text())
	}

	good := filepath.Join(dir, "good.creds")
	if err := os.WriteFile(good, []byte(nscCreds(string(seed))), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := (Conn{Creds: good}).Check(); err != nil {
		t.Errorf("a file as nsc writes it: Check = %v", err)
	}
}

// The client library reads the credentials file again at each
// reconnection: one replaced meanwhile by a file without a user JWT (a
// Secret rotated with the seed alone) is refused then too, and the seed
// is not sent to the server.
func TestCredentialsReplacedWithoutAUserJWTAreNotSent(t *testing.T) {
	t.Parallel()
	seed := userSeed(t)
	s, logs := tracedServer(t)
	path := filepath.Join(t.TempDir(), "user.creds")
	if err := os.WriteFile(path, []byte(nscCreds(string(seed))), 0o600); err != nil {
		t.Fatal(err)
	}
	c := Conn{URL: s.ClientURL(), Creds: path}
	if err := c.Check(); err != nil {
		t.Fatalf("Check = %v", err)
	}
	reconnected := make(chan struct{}, 1)
	nc, err := nats.Connect(c.URL, append(c.Options(),
		nats.ReconnectWait(10*time.Millisecond),
		nats.ReconnectHandler(func(*nats.Conn) { reconnected <- struct{}{} }))...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	if err := os.WriteFile(path, []byte(string(seed)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := nc.ForceReconnect(); err != nil {
		t.Fatal(err)
	}
	// Reconnected with the file sent, or the first connection and the
	// next, which the client left without sending it, closed.
	testwait.For(t, logs.closed, 10*time.Second, "the first connection closed")
	select {
	case <-reconnected:
	case <-logs.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("no reconnection tried within 10 s")
	}
	if strings.Contains(logs.text(), string(seed)) {
		t.Errorf("the server's log holds the seed:\n%s", logs.text())
	}
}
