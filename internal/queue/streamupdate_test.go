package queue

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestEnsureLeavesUnchangedStreamsAlone: setup over streams already as it
// would set them sends the server no stream update, as it sends no
// consumer update (TestEnsureUpdatesOnlyWhatChanged). Every replica's
// start updated all five streams; an update that crossed another
// replica's making of a consumer raced inside the server. A stream
// edited by hand is still set back, with one update.
func TestEnsureLeavesUnchangedStreamsAlone(t *testing.T) {
	t.Parallel()
	nc, js := connect(t)
	updated := setupRequests(t, nc, js, "$JS.API.STREAM.UPDATE.>", func(subj string) string {
		return strings.TrimPrefix(subj, "$JS.API.STREAM.UPDATE.")
	})
	s := Settings{Tenants: []string{"contoso", "fabrikam"}}
	updated(s)
	if got := updated(s); len(got) != 0 {
		t.Errorf("setup over the same settings updated the streams %v", got)
	}
	stream, err := js.Stream(t.Context(), offboard.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	cfg := stream.CachedInfo().Config
	want := cfg.MaxAge
	cfg.MaxAge = max(want, 24*time.Hour) + 24*time.Hour // over the duplicate window
	if _, err := js.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	// The hand edit's own update, and setup's setting it back.
	if got, want := updated(s), []string{offboard.StreamResults, offboard.StreamResults}; !slices.Equal(got, want) {
		t.Errorf("a stream edited by hand: updates %v, want %v", got, want)
	}
	if stream, err = js.Stream(t.Context(), offboard.StreamResults); err != nil || stream.CachedInfo().Config.MaxAge != want {
		t.Errorf("%s after setup: max age %v, want %v set back (%v)", offboard.StreamResults, stream.CachedInfo().Config.MaxAge, want, err)
	}
}

// TestEnsureSetsBackBucketsEditedByHand: a bucket's stream edited by hand
// in what the bucket's own settings do not show (rollups refused, which
// a purge and an object's write need; a history beyond what a bucket's
// settings can hold) is set back, as a stream is.
func TestEnsureSetsBackBucketsEditedByHand(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	s := Settings{Tenants: []string{"contoso"}}
	if _, err := Ensure(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	edits := map[string]func(*jetstream.StreamConfig){
		"KV_" + offboard.BucketLedger:  func(c *jetstream.StreamConfig) { c.AllowRollup = false },
		"KV_" + offboard.BucketControl: func(c *jetstream.StreamConfig) { c.MaxMsgsPerSubject = 256 + 5 },
		"KV_" + BucketPresence:         func(c *jetstream.StreamConfig) { c.AllowDirect = false },
		"OBJ_" + offboard.BucketPlans:  func(c *jetstream.StreamConfig) { c.AllowRollup = false },
	}
	want := map[string]jetstream.StreamConfig{}
	for name, edit := range edits {
		stream, err := js.Stream(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		cfg := stream.CachedInfo().Config
		want[name] = cfg
		edit(&cfg)
		if _, err := js.UpdateStream(t.Context(), cfg); err != nil {
			t.Fatalf("%s: edit: %v", name, err)
		}
	}
	if _, err := Ensure(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	for name, cfg := range want {
		stream, err := js.Stream(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		have := stream.CachedInfo().Config
		if have.AllowRollup != cfg.AllowRollup || have.MaxMsgsPerSubject != cfg.MaxMsgsPerSubject || have.AllowDirect != cfg.AllowDirect {
			t.Errorf("%s edited by hand, after setup: rollup %v, history %d, direct %v; want %v, %d, %v set back",
				name, have.AllowRollup, have.MaxMsgsPerSubject, have.AllowDirect, cfg.AllowRollup, cfg.MaxMsgsPerSubject, cfg.AllowDirect)
		}
	}
}
