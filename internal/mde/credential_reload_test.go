package mde

import (
	"errors"
	"os"
	"testing"
)

// After the login host refused the secret the file held, the file is
// read again at the next token request: a file removed since is the
// failure, and the secret read before is not sent again.
func TestRefusedSecretThenFileRemoved(t *testing.T) {
	t.Parallel()
	const right, wrong = "reload-secret-right-1", "reload-secret-wrong-1"
	f := setupLogin(t, right, wrong)
	cred := f.newCredential(t)
	_, err := f.getToken(cred)
	var te *TokenError
	if !errors.As(err, &te) || !te.Final {
		t.Fatalf("GetToken with a refused secret: err = %v, want a final *TokenError", err)
	}
	if err := os.Remove(f.secretFile); err != nil {
		t.Fatal(err)
	}
	_, err = f.getToken(cred)
	checkNoSecret(t, err, right, wrong)
	if !errors.As(err, &te) || te.File == "" {
		t.Errorf("GetToken after the secret file was removed: err = %v, want the file named", err)
	}
	if n := f.sim.TokenRequests(simTenantID); n != 1 {
		t.Errorf("token requests = %d, want 1: the refused secret is not sent again once its file is gone", n)
	}
}

// A token the API refused is not handed out again, also when the file
// could not be read at that moment and then reads as it did (moved away
// and back: same inode, size and time).
func TestRefusedTokenNotHandedOutAgain(t *testing.T) {
	t.Parallel()
	const secret = "reload-secret-right-2"
	f := setupLogin(t, secret, secret)
	cred := f.newCredential(t)
	first, err := f.getToken(cred)
	if err != nil {
		t.Fatalf("GetToken: %v", err)
	}
	aside := f.secretFile + ".aside"
	if err := os.Rename(f.secretFile, aside); err != nil {
		t.Fatal(err)
	}
	if err := cred.Invalidate(); err == nil { // the API answered 401 to first
		t.Fatal("Invalidate without the secret file: no error")
	}
	if err := os.Rename(aside, f.secretFile); err != nil {
		t.Fatal(err)
	}
	tok, err := f.getToken(cred)
	if err != nil {
		t.Fatalf("GetToken with the file back: %v", err)
	}
	if tok == first {
		t.Error("GetToken handed out the token the API refused")
	}
	if n := f.sim.TokenRequests(simTenantID); n != 2 {
		t.Errorf("token requests = %d, want 2", n)
	}
}
