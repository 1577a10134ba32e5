package main

import (
	"strings"
	"testing"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestSubjectPrefixOfARequestStreamInAnotherForm: a request stream whose
// subjects were written by hand as one per priority
// (mde.offboard.request.* and mde.offboard.request.*.bulk), which the
// worker takes for its own and keeps under --no-setup, is the worker's
// prefix to offboardctl too. Before, every command that connects failed,
// saying the prefix was not the worker's.
func TestSubjectPrefixOfARequestStreamInAnotherForm(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	st, err := js.Stream(t.Context(), offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.Subjects = []string{"mde.offboard.request.*", "mde.offboard.request.*.bulk"}
	if _, err := js.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	publishDead(t, js, offboard.CodeMachineNotFound, `{"requestId":"x-1","machineId":"`+strings.Repeat("a", 40)+`"}`)
	refused := 0
	for _, args := range [][]string{
		{"dead", "ls", "--json"},
		{"status", "--json"},
		{"pause", "contoso"},
		{"resume", "contoso"},
	} {
		if code, out, errs := ctl(t, url, args...); code != exitOK {
			refused++
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
	t.Logf("%d of 4 commands refused", refused)
	// Another prefix is still refused on such a stream.
	if code, _, errs := ctl(t, url, "--subject-prefix", "mde", "dead", "ls", "--json"); code != exitFailed || !strings.Contains(errs, "not the worker's") {
		t.Errorf("prefix mde: exit %d, stderr %q; want exit 1, not the worker's", code, errs)
	}
}
