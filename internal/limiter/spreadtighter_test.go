package limiter

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// TestSpreadPacesAtTheTighterOfTwoShortestWindows: of two limits of one
// length (100/1m and 50/1m), the tighter decides how many calls go, and
// the spreading paces at its rate. It paced at the first one written:
// 100/1m, a call every 600ms, let the 50 through in half a minute, and
// the calls then waited the other half, the burst spreading meant to
// prevent.
func TestSpreadPacesAtTheTighterOfTwoShortestWindows(t *testing.T) {
	t.Parallel()
	for _, ws := range [][]Window{
		{{Count: 100, Length: time.Minute}, {Count: 50, Length: time.Minute}, {Count: 1500, Length: time.Hour}},
		{{Count: 50, Length: time.Minute}, {Count: 100, Length: time.Minute}, {Count: 1500, Length: time.Hour}},
	} {
		l := NewTenant(clockwork.NewFakeClockAt(epoch)).AddSpread("offboard", ws, 1)
		p, _ := l.TryAcquire(epoch)
		if p == nil {
			t.Fatalf("%v: first call refused", ws)
		}
		p.Complete(epoch)
		if p, wait := l.TryAcquire(epoch); p != nil || wait < 1199*time.Millisecond || wait > 1201*time.Millisecond {
			t.Errorf("%v: second call: permit %v, wait %v; want a wait of about 1.2s (50/1m)", ws, p != nil, wait)
		}
	}
}
