package campaign

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
)

// TestSetMarkKeepsTheFirstCancel: of operators cancelling a campaign at
// once, over no mark or over one written by hand without the cancel, one
// writes the mark and every other is told it was cancelled already; no
// one fails, and the first mark's time stays.
func TestSetMarkKeepsTheFirstCancel(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
	kv, err := ControlBucket(t.Context(), js)
	if err != nil {
		t.Fatal(err)
	}
	if err := SetMark(t.Context(), kv, "contoso", "by-hand", Mark{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"none", "by-hand"} {
		var (
			wg             sync.WaitGroup
			mu             sync.Mutex
			written, again int
		)
		for i := range 12 {
			wg.Go(func() {
				err := SetMark(t.Context(), kv, "contoso", name, Mark{Cancelled: true, By: "op", At: time.Unix(int64(i), 0)})
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					written++
				case errors.Is(err, ErrCancelledAlready):
					again++
				default:
					t.Errorf("%s: %v", name, err)
				}
			})
		}
		wg.Wait()
		if written != 1 || again != 11 {
			t.Errorf("%s: %d wrote the mark and %d were told it was cancelled already, want 1 and 11", name, written, again)
		}
		first, err := GetMark(t.Context(), kv, "contoso", name)
		if err != nil || first == nil || !first.Cancelled {
			t.Fatalf("%s: mark %+v, %v", name, first, err)
		}
		if err := SetMark(t.Context(), kv, "contoso", name, Mark{Cancelled: true, By: "late", At: time.Now()}); !errors.Is(err, ErrCancelledAlready) {
			t.Errorf("%s: a later cancel: %v, want cancelled already", name, err)
		}
		if now, _ := GetMark(t.Context(), kv, "contoso", name); now == nil || !now.At.Equal(first.At) || now.By != "op" {
			t.Errorf("%s: mark %+v after a later cancel, want the first's %+v", name, now, first)
		}
	}
}
