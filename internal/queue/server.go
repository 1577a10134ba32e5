package queue

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedOptions configure the NATS server the worker starts when it is
// given no URL.
type EmbeddedOptions struct {
	StoreDir string // JetStream file storage
	Listen   string // host:port for clients; "127.0.0.1:-1" picks a free port
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
	})
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded NATS: not ready after 10s")
	}
	return ns, nil
}
