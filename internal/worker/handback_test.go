package worker

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// handBackMsg is a request message whose nak records whether its handler
// still marked it as under way when the nak went out.
type handBackMsg struct {
	jetstream.Msg // only Reply and NakWithDelay are used
	t             *tenantRun
	seq           uint64
	marked        []bool
}

func (m *handBackMsg) Reply() string { return "" }

func (m *handBackMsg) NakWithDelay(time.Duration) error {
	busy := m.t.handles(m.seq)
	m.marked = append(m.marked, busy)
	return nil
}

// TestHandedBackUnmarkedBeforeItsNak: a request handed back is no longer
// marked as under way when its nak goes out. A request a control hands
// back is ready again at once; its redelivery, pulled before the mark was
// cleared, was taken for a redelivery of a request still under way and
// left to a first delivery that had ended: it waited out the ack wait, a
// minute, rather than go on as the resume came. The handler's own clear,
// after the nak, must not clear the mark of that redelivery either.
func TestHandedBackUnmarkedBeforeItsNak(t *testing.T) {
	t.Parallel()
	for _, err := range []error{errPausedWhileWaiting, errBudgetLowered, errNotNew} {
		tr := &tenantRun{name: "contoso"}
		msg := &handBackMsg{t: tr, seq: 7}
		j := &job{t: tr, msg: msg, seq: 7, log: zap.NewNop()}
		w := &Worker{log: zap.NewNop()}
		if !j.mark() {
			t.Fatal("a fresh request taken for one under way")
		}
		w.leave(j, err)
		if len(msg.marked) != 1 || msg.marked[0] {
			t.Errorf("%v: marked as under way at its nak: %v, want false", err, msg.marked)
		}
		// Its redelivery is taken now, before the first handler ends.
		redelivery := &job{t: tr, msg: msg, seq: 7, log: zap.NewNop()}
		if !redelivery.mark() {
			t.Errorf("%v: the redelivery taken for a request still under way", err)
		}
		j.unmark()
		if !tr.handles(7) {
			t.Errorf("%v: the first handler's end cleared its redelivery's mark", err)
		}
	}
}
