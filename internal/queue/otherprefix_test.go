package queue

import (
	"slices"
	"testing"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestEnsureTakesTheRequestStreamInAnotherForm: a request stream whose
// subjects were written by hand in another form that takes only this
// prefix's requests (a subject per priority) is this worker's: setup sets
// it to its own form. Before, the worker refused to start, saying another
// worker ran with another --subject-prefix. A stream that takes another
// prefix's requests, also one of a longer or shorter prefix, is still
// refused.
func TestEnsureTakesTheRequestStreamInAnotherForm(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	s := Settings{Tenants: []string{"contoso"}}
	if _, err := Ensure(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	setSubjects := func(subjects ...string) {
		t.Helper()
		st, err := js.Stream(t.Context(), offboard.StreamRequests)
		if err != nil {
			t.Fatal(err)
		}
		cfg := st.CachedInfo().Config
		cfg.Subjects = subjects
		if _, err := js.UpdateStream(t.Context(), cfg); err != nil {
			t.Fatal(err)
		}
	}
	setSubjects("mde.offboard.request.*", "mde.offboard.request.*.bulk")
	if _, err := Stale(t.Context(), js, s); err != nil {
		t.Errorf("no setup, the stream in another form: %v", err)
	}
	if _, err := Ensure(t.Context(), js, s); err != nil {
		t.Fatalf("setup, the stream in another form: %v", err)
	}
	st, err := js.Stream(t.Context(), offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.Subjects; !slices.Equal(got, []string{"mde.offboard.request.>"}) {
		t.Errorf("subjects after setup %v, want [mde.offboard.request.>]", got)
	}
	for _, prefix := range []string{"mde", "mde.offboard.request", "other.offboard"} {
		o := Settings{Subjects: offboard.Subjects{Prefix: prefix}, Tenants: []string{"contoso"}}
		if _, err := Ensure(t.Context(), js, o); err == nil {
			t.Errorf("prefix %s on mde.offboard's streams: set up", prefix)
		}
		if _, err := Stale(t.Context(), js, o); err == nil {
			t.Errorf("prefix %s on mde.offboard's streams, no setup: checked", prefix)
		}
	}
	setSubjects("mde.offboard.request.*", "mde.offboard.request.*.bulk")
	o := Settings{Subjects: offboard.Subjects{Prefix: "mde"}, Tenants: []string{"contoso"}}
	if _, err := Ensure(t.Context(), js, o); err == nil {
		t.Error("prefix mde on mde.offboard's streams in another form: set up")
	}
}

func TestSubjectWithin(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		sub, pattern string
		want         bool
	}{
		{"mde.offboard.request.>", "mde.offboard.request.>", true},
		{"mde.offboard.request.*", "mde.offboard.request.>", true},
		{"mde.offboard.request.*.bulk", "mde.offboard.request.>", true},
		{"mde.offboard.request.contoso", "mde.offboard.request.>", true},
		{"mde.offboard.request", "mde.offboard.request.>", false},
		{"mde.offboard.>", "mde.offboard.request.>", false},
		{"mde.offboard.*.contoso", "mde.offboard.request.>", false},
		{"mde.offboard.request.>", "mde.request.>", false},
		{"mde.offboard.request.>", "mde.offboard.request.request.>", false},
		{"mde.offboard.request.*", "mde.offboard.request.*", true},
		{"mde.offboard.request.>", "mde.offboard.request.*", false},
		{"mde.offboard.request.a.b", "mde.offboard.request.*", false},
	} {
		if got := subjectWithin(c.sub, c.pattern); got != c.want {
			t.Errorf("subjectWithin(%q, %q) = %v, want %v", c.sub, c.pattern, got, c.want)
		}
	}
}
