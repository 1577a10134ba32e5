package worker

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/jonboulle/clockwork"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// staticToken is a credential that always gives the same token.
type staticToken struct{}

func (staticToken) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: "token", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// TestReadSentAgainTakesItsOwnPlace: the API reads a read call whole (and
// counts it) on a reused HTTP/1.1 connection, then drops the connection
// without an answer; Go's transport sends the read again on a new one. The
// second send is a second call the API may count: it goes out only with
// a place of its own in the windows, and counts there. Before, it went out
// under the first send's place: with 2 calls a minute allowed, the API
// got 3 in the test's minute.
func TestReadSentAgainTakesItsOwnPlace(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		count int   // the window's calls a minute
		want  int64 // the requests the API gets
		ok    bool  // the second read is answered
	}{
		{"no place for it", 2, 2, false},
		{"a place for it", 3, 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var requests atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				if requests.Add(1) == 2 {
					if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
						_ = conn.Close()
					}
					return
				}
				_, _ = io.WriteString(w, `{"value":[]}`)
			}))
			defer srv.Close()
			tr := srv.Client().Transport.(*http.Transport)
			defer tr.CloseIdleConnections()
			client := mde.NewClient(mde.Options{Cloud: mde.Cloud{APIBaseURL: srv.URL, Scope: "scope"}, Credential: staticToken{},
				HTTPClient: srv.Client(), Timeout: 5 * time.Second})

			clock := clockwork.NewFakeClockAt(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
			lt := limiter.NewTenant(clock)
			l := lt.Add(mde.APIMachines, []limiter.Window{{Count: tc.count, Length: time.Minute}})
			c := newCaller(clock, NewMetrics(prometheus.NewRegistry()), RetryPolicy{}, 1)
			run := &tenantRun{name: "contoso", limits: lt}
			read := func(name string) *mde.Verdict {
				p, _ := l.TryAcquire(clock.Now())
				if p == nil {
					t.Fatalf("no place for read %s", name)
				}
				v, err := c.send(t.Context(), run, mde.APIMachines, p, func(ctx context.Context) *mde.Verdict {
					return client.FindMachinesByName(ctx, name)
				})
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
			if v := read("pc-0001"); v.Class != mde.Success {
				t.Fatalf("first read: %+v", v)
			}
			v := read("pc-0002") // on the first read's connection
			if got := requests.Load(); got > int64(tc.count) || got != tc.want {
				t.Errorf("the API got %d requests in a minute that allows %d, want %d", got, tc.count, tc.want)
			}
			if (v.Class == mde.Success) != tc.ok || !v.Sent {
				t.Errorf("second read: %+v, want answered %v, sent", v, tc.ok)
			}
			if left := l.Remaining(clock.Now()); left[0] != 0 {
				t.Errorf("%d places left in the minute after %d requests, want none", left[0], requests.Load())
			}
		})
	}
}

// TestReadSentAgainEnteredInTheJournal: a read the transport sends again
// goes out only once its own entry is in the quota journal, where the
// other replicas count it. Before, the API got the third request with two
// calls entered: the other replicas could fill the window meanwhile.
func TestReadSentAgainEnteredInTheJournal(t *testing.T) {
	t.Parallel()
	clock, lt, js := contosoFollowed(t)
	l := lt.Add(mde.APIMachines, []limiter.Window{{Count: 3, Length: time.Minute}})
	c := newCaller(clock, NewMetrics(prometheus.NewRegistry()), RetryPolicy{}, 1)
	run := &tenantRun{name: "contoso", limits: lt}

	var requests atomic.Int64
	var mu sync.Mutex
	entered := make([]int, 4) // by request: the calls in the journal when it came
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := requests.Add(1)
		if n < int64(len(entered)) {
			calls := reservedCalls(r.Context(), t, js, queue.Settings{}.WithDefaults().Subjects.Quota("contoso"))
			mu.Lock()
			entered[n] = calls
			mu.Unlock()
		}
		if n == 2 {
			if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
				_ = conn.Close()
			}
			return
		}
		_, _ = io.WriteString(w, `{"value":[]}`)
	}))
	defer srv.Close()
	defer srv.Client().Transport.(*http.Transport).CloseIdleConnections()
	client := mde.NewClient(mde.Options{Cloud: mde.Cloud{APIBaseURL: srv.URL, Scope: "scope"}, Credential: staticToken{},
		HTTPClient: srv.Client(), Timeout: 5 * time.Second})
	for _, name := range []string{"pc-0001", "pc-0002"} { // the second on the first's connection
		p, _ := l.TryAcquire(clock.Now())
		if p == nil {
			t.Fatalf("no place for read %s", name)
		}
		v, err := c.send(t.Context(), run, mde.APIMachines, p, func(ctx context.Context) *mde.Verdict {
			return client.FindMachinesByName(ctx, name)
		})
		if err != nil || v.Class != mde.Success {
			t.Fatalf("read %s: %+v, %v", name, v, err)
		}
	}
	if got := requests.Load(); got != 3 {
		t.Fatalf("the API got %d requests, want 3 (the second sent again)", got)
	}
	mu.Lock()
	defer mu.Unlock()
	for n := 1; n <= 3; n++ {
		if entered[n] < n {
			t.Errorf("request %d came with %d calls entered in the quota journal, want %d", n, entered[n], n)
		}
	}
}

// reservedCalls counts the calls entered in the journal subject's entries.
func reservedCalls(ctx context.Context, t *testing.T, js jetstream.JetStream, subject string) int {
	t.Helper()
	stream, err := js.Stream(ctx, offboard.StreamQuota)
	if err != nil {
		t.Error(err)
		return 0
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Error(err)
		return 0
	}
	calls := 0
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Error(err)
			return 0
		}
		var ev limiter.Event
		if m.Subject != subject || json.Unmarshal(m.Data, &ev) != nil {
			continue
		}
		calls += len(ev.Reserved)
	}
	return calls
}
