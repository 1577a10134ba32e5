package app

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// TestStartAfterStopStartsNothing: an app stopped before it was started
// (a caller's shutdown that came first) refuses the start instead of
// bringing up the embedded server, the worker and the HTTP endpoints
// that no Stop would ever end.
func TestStartAfterStopStartsNothing(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, noStart: true})
	a, err := New(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Stop(context.Background()); err != nil {
		t.Fatalf("Stop before Start: %v", err)
	}
	err = a.Start(t.Context())
	if err == nil {
		_ = a.Stop(context.Background())
	}
	if !errors.Is(err, ErrStopped) {
		t.Fatalf("Start after Stop answered %v, want ErrStopped", err)
	}
	if a.lis != nil || a.nc != nil || a.ns != nil {
		t.Error("Start after Stop bound its address or started NATS")
	}
}

// TestStopWhileStartWaitsForNATS: a Stop while the start waits for NATS to
// take the streams ends the wait at once, and returns only once the start
// is over and everything it brought up is stopped again; the start says
// it was stopped (before, the start went on bringing parts up after Stop
// had returned, and no one stopped them).
func TestStopWhileStartWaitsForNATS(t *testing.T) {
	t.Parallel()
	_, _, a, started := startWithoutQuorum(t, 1)
	if err := a.Stop(context.Background()); err != nil {
		t.Errorf("Stop while starting: %v", err)
	}
	// The start is over when its end is marked (startDone); the answer
	// on started comes a moment after, once Start has returned.
	select {
	case <-a.startDone:
	default:
		t.Fatal("Stop returned while the start was still under way")
	}
	select {
	case err := <-started:
		if !errors.Is(err, ErrStopped) {
			t.Errorf("the start answered %v, want ErrStopped", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the start, over, did not return within 10s")
	}
	if !a.nc.IsClosed() {
		t.Error("the NATS connection is still open after Stop")
	}
	if conn, err := net.Dial("tcp", a.lis.Addr().String()); err == nil {
		conn.Close()
		t.Error("the HTTP address is still bound after Stop")
	}
}
