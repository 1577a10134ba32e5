package queue

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// MinMaxPayload is the smallest max_payload of a NATS server the worker
// works with: a request may take 68 KiB with its headers
// (offboard.MaxRequestMessage), its dead letter carries it with a few
// more, and a result carries a Machine Action of up to 80 KiB once cut
// down. With less, such a request's dead letter or result could never be
// stored, and the request came back for ever.
const MinMaxPayload = 128 << 10

// EmbeddedOptions configure the NATS server the worker starts when it is
// given no URL.
type EmbeddedOptions struct {
	StoreDir string // JetStream file storage
	Listen   string // host:port for clients; port 0 or -1 picks a free port
	// MaxStore bounds the JetStream file storage; 0: three quarters of
	// the space free on StoreDir's disk at the start.
	MaxStore int64
}

// StartEmbedded starts a NATS server with JetStream in this process and
// waits until it accepts clients.
func StartEmbedded(o EmbeddedOptions) (*server.Server, error) {
	host, port := "127.0.0.1", -1
	if o.Listen != "" {
		h, p, err := net.SplitHostPort(o.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded NATS listen address %q: %w", o.Listen, err)
		}
		if port, err = strconv.Atoi(p); err != nil {
			return nil, fmt.Errorf("embedded NATS listen port %q: %w", p, err)
		}
		if port == 0 {
			port = -1 // a free port, as with net.Listen; NATS reads 0 as its default, 4222
		}
		host = h
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: "mde-offboard-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		NoSigs:     true,
		NoLog:      true,
		MaxPayload: 1 << 20,

		JetStreamMaxStore: o.MaxStore,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	// The server reports a port it cannot bind through its logger's
	// Fatalf, during Start, and then never becomes ready: keep that
	// message and fail at once with it.
	fatal := &fatalLogger{}
	ns.SetLogger(fatal, false, false)
	ns.Start()
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	if msg := fatal.message(); msg != "" {
		ns.Shutdown()
		return nil, fatalError(addr, msg)
	}
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		if msg := fatal.message(); msg != "" {
			return nil, fatalError(addr, msg)
		}
		return nil, fmt.Errorf("embedded NATS: not ready after 10s")
	}
	return ns, nil
}

// StorageError is StartEmbedded's error when JetStream does not start
// on StoreDir: the server's own message ("storage directory is not a
// directory") does not say where.
type StorageError struct{ Message string }

func (e *StorageError) Error() string { return "embedded NATS: " + e.Message }

// ListenError is StartEmbedded's error when the server cannot listen on
// its client address, Addr; InUse says another process listens there.
type ListenError struct {
	Addr    string
	Message string
	InUse   bool
}

func (e *ListenError) Error() string { return "embedded NATS: " + e.Message }

// fatalError is the error of the server's fatal message msg, the server
// listening on addr.
func fatalError(addr, msg string) error {
	switch {
	case strings.HasPrefix(msg, "Error listening on port"):
		return &ListenError{Addr: addr, Message: msg, InUse: strings.Contains(msg, "address already in use")}
	case strings.Contains(msg, "JetStream"):
		return &StorageError{Message: msg}
	}
	return fmt.Errorf("embedded NATS: %s", msg)
}

// fatalLogger keeps the server's first fatal message and drops the rest
// of its log, as NoLog did.
type fatalLogger struct {
	mu    sync.Mutex
	fatal string
}

func (l *fatalLogger) message() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatal
}

func (l *fatalLogger) Fatalf(format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fatal == "" {
		l.fatal = fmt.Sprintf(format, v...)
	}
}

func (*fatalLogger) Noticef(string, ...any) {}
func (*fatalLogger) Warnf(string, ...any)   {}
func (*fatalLogger) Errorf(string, ...any)  {}
func (*fatalLogger) Debugf(string, ...any)  {}
func (*fatalLogger) Tracef(string, ...any)  {}
