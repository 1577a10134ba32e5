package mde

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// TestTokenInHandReadsTheClockOnce: a call that finds its token in hand
// reads the clock once. A read of the wall clock is most of what such a
// call costs (about 80 ns of 270 on a virtual machine's clock): with the
// bounds of a token's reuse it read it three times, where it read it
// twice before, and every call of the worker pays for it.
func TestTokenInHandReadsTheClockOnce(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte("clock-secret-0001\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	reads := 0
	clock := func() time.Time { reads++; return now }
	under := &countingCredential{now: func() time.Time { return now }}
	cred := &Credential{host: "login.example", now: clock, watch: []string{path},
		build: func() (azcore.TokenCredential, error) { return under, nil }}
	if err := cred.refresh(); err != nil {
		t.Fatal(err)
	}
	opts := policy.TokenRequestOptions{Scopes: []string{"https://api.example/.default"}}
	for range 2 { // the token got, the file looked at
		if _, err := cred.GetToken(t.Context(), opts); err != nil {
			t.Fatal(err)
		}
	}
	const calls = 100
	reads = 0
	for range calls {
		if _, err := cred.GetToken(t.Context(), opts); err != nil {
			t.Fatal(err)
		}
	}
	if under.calls != 1 {
		t.Fatalf("library asked %d times, want 1", under.calls)
	}
	if reads != calls {
		t.Errorf("clock read %d times for %d calls with the token in hand, want %d", reads, calls, calls)
	}
}
