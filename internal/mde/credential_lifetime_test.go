package mde

import (
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// TestTokenLifetimeOfTheLoginHost: whatever lifetime the login host
// gives a token (expires_in), a burst of calls makes one token request,
// and a token is asked for again within a day. The identity library
// does not cache a token of less than 5 minutes, and reads one of 10^10
// seconds as expired long ago (the product overflows): every call asked
// the login host for a token. One of 10^9 seconds (or -10^10, which
// overflows the other way) was handed out for ever. A lifetime missing
// is refused by the library: no token, a failure tried again later.
func TestTokenLifetimeOfTheLoginHost(t *testing.T) {
	t.Parallel()
	tests := []struct {
		expiresIn string // "": none
		// again is when a new token is asked for; 0: never within a day
		// (the normal lifetime is cut by the clock's move alone).
		again time.Duration
	}{
		{expiresIn: `3599`},
		{expiresIn: `0`, again: minTokenReuse},
		{expiresIn: `-5`, again: minTokenReuse},
		{expiresIn: `1`, again: minTokenReuse},
		{expiresIn: `"0"`, again: minTokenReuse},
		{expiresIn: `299`, again: minTokenReuse},
		{expiresIn: `10000000000`, again: minTokenReuse},
		{expiresIn: `1000000000`, again: maxTokenReuse},
		{expiresIn: `-10000000000`, again: maxTokenReuse},
		{expiresIn: ``},
	}
	for _, tt := range tests {
		t.Run("expires_in="+tt.expiresIn, func(t *testing.T) {
			t.Parallel()
			var logins atomic.Int32
			login, c := loginHost(t, func(w http.ResponseWriter, _ *http.Request) {
				n := logins.Add(1)
				lifetime := ""
				if tt.expiresIn != "" {
					lifetime = `"expires_in":` + tt.expiresIn + `,`
				}
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprintf(w, `{"token_type":"Bearer",%s"access_token":"lifetime-token-%d"}`, lifetime, n)
			})
			secretFile := filepath.Join(t.TempDir(), "secret")
			writeSecretFile(t, secretFile, "lifetime-secret-0001", time.Now())
			get, advance := secretFileTokens(t, login, c, secretFile)

			const calls = 20
			for range calls {
				err := get()
				if tt.expiresIn == "" {
					var te *TokenError
					if !errors.As(err, &te) || te.Final || te.failure != failUnreadable {
						t.Fatalf("GetToken without expires_in: %v, want the answer unreadable, not final", err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("GetToken: %v", err)
				}
			}
			if tt.expiresIn == "" {
				return // each call a login request, a failure with its backoff
			}
			if n := logins.Load(); n != 1 {
				t.Errorf("login requests for %d calls at once = %d, want 1", calls, n)
			}
			if tt.again == 0 {
				return
			}
			advance(tt.again - time.Second)
			if err := get(); err != nil || logins.Load() != 1 {
				t.Errorf("GetToken a second before %v: err %v, %d login requests; want the token in hand", tt.again, err, logins.Load())
			}
			advance(time.Second)
			if err := get(); err != nil || logins.Load() != 2 {
				t.Errorf("GetToken %v on: err %v, %d login requests; want a new token", tt.again, err, logins.Load())
			}
		})
	}
}
