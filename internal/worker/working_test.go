package worker

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// marked is a presence that names this process and says every other one
// is alive, or gone.
type marked struct {
	instance string
	alive    bool
}

func (marked) Serves(string) bool      { return false }
func (marked) Known() bool             { return true }
func (p marked) Instance() string      { return p.instance }
func (p marked) Running(i string) bool { return p.alive || i == p.instance }

// TestWorkingAnswers: a process answers whether a request is in its hands
// from what it handles: yes for a request under way, no for another one or
// a tenant it does not serve; a question it cannot read, or no process to
// ask, is no answer at all.
func TestWorkingAnswers(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
	settings := queue.Settings{}.WithDefaults()
	w := &Worker{opts: Options{JS: js, Settings: settings, Presence: marked{instance: "me"}}, log: zap.NewNop(), tenants: map[string]*tenantRun{"contoso": {}}}
	w.serveWorking()
	if w.workingSub == nil {
		t.Fatal("no subscription")
	}
	defer func() { _ = w.workingSub.Unsubscribe() }()
	w.tenants["contoso"].working.Store(workKey{seq: 7}, true)
	for _, c := range []struct {
		instance, tenant string
		seq              uint64
		busy, answered   bool
	}{
		{"me", "contoso", 7, true, true},
		{"me", "contoso", 8, false, true},
		{"me", "fabrikam", 7, false, true},
		{"someone-else", "contoso", 7, false, false},
	} {
		busy, answered := w.askWorking(t.Context(), c.instance, c.tenant, c.seq)
		if busy != c.busy || answered != c.answered {
			t.Errorf("ask %s about %s %d: busy %v, answered %v; want %v, %v", c.instance, c.tenant, c.seq, busy, answered, c.busy, c.answered)
		}
	}
	msg, err := js.Conn().Request(settings.Subjects.Working("me"), []byte("contoso seven"), queue.StepTimeout)
	if err != nil || string(msg.Data) != "?" {
		t.Errorf("an unreadable question: %v, %v; want the answer ?", msg, err)
	}
}

// TestPastTheLeaseTheCallersAnswerIsAwaited: a request id's "calling"
// entry is older than the calling lease, and the message that wrote it is
// still at work (its look for its action held by 429s for hours, say),
// here or in another process. Another message of the id waits for it and
// calls nothing. Before, it took the call as cut off and worked on the id
// too: the two could answer it differently (failed by the one whose look
// gave up, created by the other). When the writer is no longer at work,
// or cannot answer, the lease decides as before: the message takes the
// call as cut off, and here calls.
func TestPastTheLeaseTheCallersAnswerIsAwaited(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, writer, answer string // answer: what the writer's process says; "": nothing
		earlier              uint64 // the stream place of the message that called
		waits                bool
	}{
		{"at work here", "w-1", "", 999, true},
		{"at work elsewhere", "w-2", "yes", 999, true},
		{"done elsewhere", "w-2", "no", 999, false},
		{"elsewhere, no answer", "w-2", "", 999, false},
		// The same message, delivered again (its consumer made again)
		// while another process still works on it.
		{"this message at work elsewhere", "w-2", "yes", 1, true},
		{"this message done elsewhere", "w-2", "no", 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := setupLoopOpts(t, `["100/1m"]`, "", RetryPolicy{}, func(o *Options) { o.Presence = marked{instance: "w-1"} })
			earlier := tc.earlier
			if tc.writer == "w-1" {
				e.w.tenants["contoso"].working.Store(workKey{seq: earlier}, true)
			}
			if tc.answer != "" {
				sub, err := e.js.Conn().Subscribe(e.w.opts.Settings.Subjects.Working(tc.writer), func(m *nats.Msg) {
					if string(m.Data) == "contoso "+strconv.FormatUint(earlier, 10) {
						_ = m.Respond([]byte(tc.answer))
					}
				})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = sub.Unsubscribe() })
			}
			entry := &queue.Entry{State: queue.StateCalling, Seq: earlier, MachineID: loopMachine,
				Started: e.clock.Now().Add(-3 * time.Hour), Writer: tc.writer}
			if err := e.w.opts.Ledger.Put(t.Context(), "contoso", "r-1", nil, entry); err != nil {
				t.Fatal(err)
			}
			e.publish(t, "r-1")
			if !tc.waits {
				// The look for an action of the call cut off waits on
				// the fake clock.
				if r, _ := e.untilResult(t, nil); r.RequestID != "r-1" || r.Outcome != offboard.OutcomeCreated {
					t.Errorf("result %s %s %+v, want r-1 created", r.RequestID, r.Outcome, r.Error)
				}
				return
			}
			select {
			case r := <-e.results:
				t.Errorf("result %s %+v, want none while the message that called is at work", r.Outcome, r.Error)
			case <-time.After(3 * time.Second):
			}
			if n := len(e.sim.Calls()); n != 0 {
				t.Errorf("%d API calls, want none while the message that called is at work", n)
			}
		})
	}
}

// TestPastTheLeaseUnroutedAwaitsTheCaller: a request of a tenant no replica
// serves now, whose id's "calling" entry is past its lease while the
// process that wrote it still works on that message (a replica that
// stopped serving the tenant, finishing its requests under way), is not
// answered unknown_tenant over it; once that process is done with it, it
// is.
func TestPastTheLeaseUnroutedAwaitsTheCaller(t *testing.T) {
	t.Parallel()
	for _, answer := range []string{"yes", "no"} {
		t.Run(answer, func(t *testing.T) {
			t.Parallel()
			e := setupLoopOpts(t, `["100/1m"]`, "", RetryPolicy{}, func(o *Options) { o.Presence = marked{instance: "w-1"} })
			subjects := e.w.opts.Settings.Subjects
			sub, err := e.js.Conn().Subscribe(subjects.Working("w-2"), func(m *nats.Msg) { _ = m.Respond([]byte(answer)) })
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = sub.Unsubscribe() })
			results, err := e.js.Conn().SubscribeSync(subjects.Result("fabrikam"))
			if err != nil {
				t.Fatal(err)
			}
			entry := &queue.Entry{State: queue.StateCalling, Seq: 999, MachineID: loopMachine,
				Started: e.clock.Now().Add(-3 * time.Hour), Writer: "w-2"}
			if err := e.w.opts.Ledger.Put(t.Context(), "fabrikam", "f-1", nil, entry); err != nil {
				t.Fatal(err)
			}
			data := []byte(`{"requestId":"f-1","machineId":"` + loopMachine + `"}`)
			if _, err := e.js.Publish(t.Context(), subjects.Request("fabrikam", offboard.Normal), data); err != nil {
				t.Fatal(err)
			}
			m, err := results.NextMsg(3 * time.Second)
			switch {
			case answer == "yes" && err == nil:
				t.Errorf("answered %s while the message that called is at work, want no answer", m.Data)
			case answer == "no" && err != nil:
				t.Errorf("no answer once the message that called is done: %v", err)
			case answer == "no" && !strings.Contains(string(m.Data), offboard.CodeUnknownTenant):
				t.Errorf("answered %s, want unknown_tenant", m.Data)
			}
		})
	}
}
