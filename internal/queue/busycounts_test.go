package queue

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestBusySourcesMadeTogetherCountApart: busy tenants' sources counted
// together (a campaign started for every tenant at once) read their
// counts again at the time drawn for each, spread over the last tenth of
// IdlePoll, not at the first safety poll after it: their polls every 2 s
// since the counts put every read at 28 or 30 s, a thousand tenants'
// 2000 consumer infos in two bursts.
func TestBusySourcesMadeTogetherCountApart(t *testing.T) {
	t.Parallel()
	tenants := tenantNames("b", 50)
	_, js, r, _ := routed(t, tenants...)
	at := time.Now()
	seen := map[time.Duration]bool{}
	for _, name := range tenants {
		src, err := r.Source(t.Context(), js, name, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		// Counted with requests waiting: busy, polling every 2 s.
		src.counts([2]*jetstream.ConsumerInfo{{NumPending: 5}, {}}, at)
		src.mu.Lock()
		due := src.counted.Add(src.idle)
		src.mu.Unlock()
		// The tenant's loop: at each safety poll due, its pulls (which
		// find requests) or the counts.
		now := at
		for range 100 {
			now = now.Add(max(src.untilPoll(now), 0))
			if src.pollNeeded(now, nil) == pollCounts {
				break
			}
		}
		if d := now.Sub(due); d < 0 || d > 10*time.Millisecond {
			t.Errorf("%s read its counts %v after the last, %v after they were due", name, now.Sub(at), d)
		}
		seen[now.Sub(at).Round(100*time.Millisecond)] = true
	}
	t.Logf("%d busy sources counted together read their counts again at %d distinct times (to 0.1 s)", len(tenants), len(seen))
	if len(seen) < 10 {
		t.Errorf("%d busy sources read their counts again at %d distinct times, want them spread", len(tenants), len(seen))
	}
}
