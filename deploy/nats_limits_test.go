package deploy

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// maxPublisherConnections bounds what accounts.conf may let one
// publisher's account hold: a few feeds and their restarts, not the
// server's connections.
const maxPublisherConnections = 64

// maxPublisherSubscriptions bounds the subscriptions of one publisher's
// connection: it needs one, for the acknowledgements of its publishes.
const maxPublisherSubscriptions = 1000

// TestNATSPublisherLimits checks that each publisher's account of
// deploy/nats/accounts.conf bounds its connections and each connection's
// subscriptions (to at most maxPublisherSubscriptions), and that the server holds a publisher to them: one that
// opens connection after connection is refused past its limit, and the
// worker still connects.
func TestNATSPublisherLimits(t *testing.T) {
	for _, u := range accountUsers {
		t.Setenv(u.passwordEnv, "example")
	}
	opts, err := server.ProcessConfigFile("nats/accounts.conf")
	if err != nil {
		t.Fatal(err)
	}
	limits := map[string]int{}
	for _, acc := range opts.Accounts {
		limits[acc.Name] = acc.MaxActiveConnections()
	}
	for user := range publishers {
		acc := accountUsers[user].account
		if n := limits[acc]; n <= 0 || n > maxPublisherConnections {
			t.Errorf("account %s: %d connections at most, want 1 to %d", acc, n, maxPublisherConnections)
		}
	}
	if t.Failed() {
		return
	}

	hostPort, _ := startAccountsServer(t)
	acc := accountUsers["contoso-cmdb"].account
	var last *client
	for range limits[acc] {
		last = connectAs(t, hostPort, "contoso-cmdb")
	}
	nc, err := nats.Connect(userURL(hostPort, "contoso-cmdb"), nats.NoReconnect())
	if err == nil {
		nc.Close()
		t.Errorf("contoso-cmdb: connection %d taken, past its account's %d", limits[acc]+1, limits[acc])
	} else if !errors.Is(err, nats.ErrMaxAccountConnectionsExceeded) {
		t.Errorf("contoso-cmdb: connection %d: %v, want %v", limits[acc]+1, err, nats.ErrMaxAccountConnectionsExceeded)
	}
	connectAs(t, hostPort, "mde-offboard-worker")

	// Subscriptions: the server refuses those past the connection's limit.
	for i := range maxPublisherSubscriptions + 1 {
		if _, err := last.nc.SubscribeSync(fmt.Sprintf("_INBOX.flood.%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := last.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-last.errs:
		if !errors.Is(err, nats.ErrMaxSubscriptionsExceeded) {
			t.Errorf("contoso-cmdb: %d subscriptions: %v, want %v", maxPublisherSubscriptions+1, err, nats.ErrMaxSubscriptionsExceeded)
		}
	case <-time.After(2 * time.Second):
		t.Errorf("contoso-cmdb: %d subscriptions on one connection taken", maxPublisherSubscriptions+1)
	}
}
