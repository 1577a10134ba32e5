package app

import (
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/control"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestClusterPauseAfterControlWatchServerLost: on a three-node cluster,
// the server that serves the worker's watch of the controls goes down
// and stays down, while the worker's own connection (to another server)
// holds. A pause written then still stops the tenant's calls within a
// second.
func TestClusterPauseAfterControlWatchServerLost(t *testing.T) {
	t.Parallel()
	e, win := watchServerLost(t, "$KV."+offboard.BucketControl+".pause.>", "its watch of the controls")

	res := e.collect("mde.offboard.result.>")
	e.offboardEach("contoso", "c", 0, 200)
	eventually(t, 20*time.Second, "the first results", func() bool { return res.resultsOf("contoso") >= 5 })
	paused := e.control(control.ActionPause, "contoso", control.PriorityAll)
	// Calls made after the pause: none once it is known; the drain would
	// make 20 a second for 10 s without it.
	time.Sleep(3 * time.Second)
	calls := e.offboardCallsSince("contoso", paused)
	late := e.offboardCallsSince("contoso", paused.Add(time.Second))
	t.Logf("%d calls after the pause, %d of them more than a second after", len(calls), len(late))
	if len(late) > 0 {
		t.Errorf("%d calls more than a second after the pause, the last %v after", len(late), late[len(late)-1].Sub(paused).Round(10*time.Millisecond))
	}
	if n := e.sim.MaxInWindow(e.tenants["contoso"].tenantID, "offboard", win); n > win.Count {
		t.Errorf("%d calls in a window of %d", n, win.Count)
	}
	e.oneActionEach("contoso", res.resultsOf("contoso"))
}

// watchServerLost starts a worker of tenant contoso (200 devices, 20
// calls a second: a backlog outlasts a control) on a three-node cluster,
// streams of three replicas, and shuts down the server that holds its
// watch of the control bucket whose filters include filter (what, for the
// log), for good, while the worker's own connection holds, and waits for
// the streams written next to be led by the servers left. The watch is
// an ephemeral consumer of one replica, on one server: the worker is
// started again until that is not the server it is connected to (a
// reconnection has the watch read anew). It returns the env and the
// simulator's offboard window.
func watchServerLost(t *testing.T, filter, what string) (*env, mdesim.Window) {
	t.Helper()
	c := natstest.Start(t, 3)
	win := mdesim.Window{Count: 5, Length: 250 * time.Millisecond}
	e := setup(t, envConfig{
		sim:     mdesim.Options{Latency: 20 * time.Millisecond, Limits: map[string][]mdesim.Window{"offboard": {win}}},
		limits:  `["5/250ms"]`,
		tenants: []string{"contoso"}, machines: 200, noStart: true,
	})
	e.opts.NATSURL = c.URLs()
	e.opts.Queue.Replicas = 3
	connect := func() {
		e.start()
		e.nc.Close()
		e.connect(c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	}
	connect()
	var w, h int
	for tries := 0; ; tries++ {
		w, h = c.Index(e.app.nc.ConnectedServerName()), watchServer(t, e, c, filter)
		if w != h {
			break
		}
		if tries == 10 {
			t.Fatalf("%s stays on the worker's server", what)
		}
		e.stop()
		connect()
	}
	t.Logf("worker connected to %s; shutting down %s, which serves %s", c.Name(w), c.Name(h), what)
	c.Shutdown(h)
	// The requests and the controls are written at once: their streams
	// must have chosen leaders among the servers left.
	for _, stream := range []string{offboard.StreamRequests, "KV_" + offboard.BucketControl} {
		eventually(t, 20*time.Second, stream+" led by a server left", func() bool {
			return c.StreamLeader(t.Context(), e.js, stream) != h
		})
	}
	return e, win
}

// watchServer is the server that holds the worker's consumer of the
// control bucket's stream whose filters include filter.
func watchServer(t *testing.T, e *env, c *natstest.Cluster, filter string) int {
	t.Helper()
	var at int
	eventually(t, 10*time.Second, "the control watch's consumer", func() bool {
		st, err := e.js.Stream(t.Context(), "KV_"+offboard.BucketControl)
		if err != nil {
			return false
		}
		at = -1
		for ci := range st.ListConsumers(t.Context()).Info() {
			if (ci.Config.FilterSubject == filter || slices.Contains(ci.Config.FilterSubjects, filter)) && ci.Cluster != nil {
				at = c.Index(ci.Cluster.Leader)
			}
		}
		return at >= 0
	})
	return at
}

// TestClusterCancelAfterMarksWatchServerLost: on a three-node cluster,
// the server that serves the worker's watch of the campaigns' marks goes
// down and stays down, while the worker's own connection holds. A
// campaign cancelled then has none of its requests sent more than a
// second after the cancel; each waiting one is answered cancelled.
func TestClusterCancelAfterMarksWatchServerLost(t *testing.T) {
	t.Parallel()
	e, _ := watchServerLost(t, "$KV."+offboard.BucketControl+".campaign.>", "its watch of the campaigns' marks")

	res := e.collect("mde.offboard.result.>")
	const rows = 200
	for i := range rows {
		id := campaign.RequestID("wave1", i+1)
		e.publish("mde.offboard.request.contoso.bulk", map[string]any{"requestId": id, "machineId": e.tenants["contoso"].machines[i].ID,
			"source": campaign.Source("wave1")}, "contoso:"+id)
	}
	eventually(t, 20*time.Second, "the first results", func() bool { return res.resultsOf("contoso") >= 5 })
	kv, err := campaign.ControlBucket(t.Context(), e.js)
	if err != nil {
		t.Fatal(err)
	}
	cancelled := time.Now()
	if err := campaign.SetMark(t.Context(), kv, "contoso", "wave1", campaign.Mark{Cancelled: true, By: "op", At: cancelled}); err != nil {
		t.Fatal(err)
	}
	got := res.wait(t, rows, 30*time.Second)
	calls := e.offboardCallsSince("contoso", cancelled)
	late := e.offboardCallsSince("contoso", cancelled.Add(time.Second))
	n := 0
	for _, rs := range got {
		if r := rs[len(rs)-1]; r.Error != nil && r.Error.Code == offboard.CodeCancelled {
			n++
		}
	}
	t.Logf("%d calls after the cancel, %d of them more than a second after; %d of %d answered cancelled", len(calls), len(late), n, rows)
	if len(late) > 0 {
		t.Errorf("%d calls more than a second after the cancel, the last %v after", len(late), late[len(late)-1].Sub(cancelled).Round(10*time.Millisecond))
	}
	e.oneActionEach("contoso", rows-n)
}
