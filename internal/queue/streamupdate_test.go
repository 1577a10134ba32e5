package queue

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

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
	updates := make(chan string, 100)
	sub, err := nc.Subscribe("$JS.API.STREAM.UPDATE.>", func(m *nats.Msg) { updates <- m.Subject })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	updated := func(s Settings) []string {
		t.Helper()
		if _, err := Ensure(t.Context(), js, s); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil { // the subscription has seen every request
			t.Fatal(err)
		}
		var names []string
		for {
			select {
			case subj := <-updates:
				names = append(names, strings.TrimPrefix(subj, "$JS.API.STREAM.UPDATE."))
			default:
				return names
			}
		}
	}
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
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	<-updates // the edit's own
	if got := updated(s); len(got) != 1 || got[0] != offboard.StreamResults {
		t.Errorf("a stream edited by hand: setup updated %v, want %s alone", got, offboard.StreamResults)
	}
	if stream, err = js.Stream(t.Context(), offboard.StreamResults); err != nil || stream.CachedInfo().Config.MaxAge != want {
		t.Errorf("%s after setup: max age %v, want %v set back (%v)", offboard.StreamResults, stream.CachedInfo().Config.MaxAge, want, err)
	}
}
