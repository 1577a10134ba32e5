package worker

import (
	"testing"

	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
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
	w.tenants["contoso"].working.Store(uint64(7), true)
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
