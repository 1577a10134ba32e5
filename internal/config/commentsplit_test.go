package config

import (
	"fmt"
	"strings"
	"testing"
)

// TestCommentTemplateCallsEndAtASplitCharacter: where the cut splits a
// character, print, println and printf end there, as their output cut
// whole would: a shorter text given after it is not written in its place.
func TestCommentTemplateCallsEndAtASplitCharacter(t *testing.T) {
	long := strings.Repeat("a", maxCommentOutput-1)
	args := []any{long, "é", "b"}
	if got, want := boundedSprint(args, false), cutOutput(fmt.Sprint(args...)); got != want {
		t.Errorf("print: ends %q, want %q", tail(got), tail(want))
	}
	if got, want := boundedSprint([]any{long[1:], "é", "b"}, true), cutOutput(fmt.Sprintln(long[1:], "é", "b")); got != want {
		t.Errorf("println: ends %q, want %q", tail(got), tail(want))
	}
	if got, want := boundedSprintf("%s%s%s", args...), cutOutput(fmt.Sprintf("%s%s%s", args...)); got != want {
		t.Errorf("printf: ends %q, want %q", tail(got), tail(want))
	}
}

func tail(s string) string { return s[max(len(s)-12, 0):] }
