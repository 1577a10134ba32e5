package main

import (
	"testing"
	"time"
)

// TestAgeOfATimeAheadOfThisClock: a dead letter stamped by a server whose
// clock is ahead of this machine's is listed as just stored, not with an
// age below zero ("-3s" before).
func TestAgeOfATimeAheadOfThisClock(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		-3 * time.Second:        "0s",
		-2 * time.Hour:          "0s",
		0:                       "0s",
		1500 * time.Millisecond: "2s",
		90 * time.Minute:        "1h30m",
		72 * time.Hour:          "3d",
	} {
		if got := age(d); got != want {
			t.Errorf("age(%v) = %q, want %q", d, got, want)
		}
	}
}
