package mde

// mdesim does not import this package (go list -deps), so these tests can
// stay in package mde and use the simulator's login endpoint.

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

func TestCredentialConfigCheck(t *testing.T) {
	t.Parallel()
	const (
		tenantID = "11111111-2222-3333-4444-555555555555"
		clientID = "66666666-7777-8888-9999-000000000000"
	)
	tests := []struct {
		name    string
		cc      CredentialConfig
		wantErr []string // substrings of the error; nil for no error
	}{
		{name: "none", cc: CredentialConfig{TenantID: tenantID, ClientID: clientID}, wantErr: []string{"exactly one", "none is set"}},
		{name: "secret file", cc: CredentialConfig{ClientSecretFile: "/run/secrets/s"}},
		{name: "secret env", cc: CredentialConfig{ClientSecretEnv: "MDE_SECRET"}},
		{name: "certificate", cc: CredentialConfig{CertificateFile: "/run/secrets/c.pem"}},
		{name: "certificate with password", cc: CredentialConfig{CertificateFile: "/run/secrets/c.pfx", CertificatePasswordFile: "/run/secrets/p"}},
		{name: "workload identity", cc: CredentialConfig{WorkloadIdentity: true}},
		{name: "workload identity with token file", cc: CredentialConfig{WorkloadIdentity: true, TokenFile: "/var/run/t"}},
		{name: "managed identity", cc: CredentialConfig{ManagedIdentity: true, ClientID: clientID}},
		{name: "password file alone", cc: CredentialConfig{CertificatePasswordFile: "/run/secrets/p"}, wantErr: []string{"none is set"}},
		{name: "token file alone", cc: CredentialConfig{TokenFile: "/var/run/t"}, wantErr: []string{"none is set"}},
		{
			name:    "secret file and certificate",
			cc:      CredentialConfig{ClientSecretFile: "/run/secrets/s", CertificateFile: "/run/secrets/c.pem"},
			wantErr: []string{"got 2", "clientSecretFile", "certificateFile"},
		},
		{
			name:    "secret env and managed identity",
			cc:      CredentialConfig{ClientSecretEnv: "MDE_SECRET", ManagedIdentity: true},
			wantErr: []string{"got 2", "clientSecretEnv", "managedIdentity"},
		},
		{
			name:    "secret file and workload identity",
			cc:      CredentialConfig{ClientSecretFile: "/run/secrets/s", WorkloadIdentity: true},
			wantErr: []string{"got 2", "clientSecretFile", "workloadIdentity"},
		},
		{
			name: "all five",
			cc: CredentialConfig{ClientSecretFile: "s", ClientSecretEnv: "E", CertificateFile: "c",
				WorkloadIdentity: true, ManagedIdentity: true},
			wantErr: []string{"got 5"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cc.Check()
			if tt.wantErr == nil {
				if err != nil {
					t.Errorf("Check() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Check() = nil, want an error")
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Check() = %q, want it to hold %q", err, s)
				}
			}
		})
	}
}

const (
	simTenantID = "11111111-2222-3333-4444-555555555555"
	simClientID = "66666666-7777-8888-9999-000000000000"
)

// loginFixture is an mdesim server with one tenant, the cloud pointing at
// it, an HTTP client trusting it and a secret file.
type loginFixture struct {
	sim        *mdesim.Server
	cloud      Cloud
	hc         *http.Client
	secretFile string
	cc         CredentialConfig
}

func setupLogin(t *testing.T, simSecret, fileSecret string) *loginFixture {
	t.Helper()
	sim := mdesim.New(mdesim.Options{NullActionMachineFields: true})
	sim.AddTenant(mdesim.Tenant{TenantID: simTenantID, ClientID: simClientID, ClientSecret: simSecret})
	base := sim.StartTLS()
	t.Cleanup(sim.Close)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: sim.CertPool()}}
	t.Cleanup(tr.CloseIdleConnections)
	c, err := ResolveCloud("commercial", base, base, "")
	if err != nil {
		t.Fatalf("ResolveCloud(%q): %v", base, err)
	}
	f := &loginFixture{sim: sim, cloud: c, hc: &http.Client{Transport: tr}, secretFile: filepath.Join(t.TempDir(), "client-secret")}
	writeSecretFile(t, f.secretFile, fileSecret, time.Now())
	f.cc = CredentialConfig{TenantID: simTenantID, ClientID: simClientID, ClientSecretFile: f.secretFile}
	return f
}

// writeSecretFile writes the secret with a trailing newline, as editors and
// kubectl do, and sets the file's modification time.
func writeSecretFile(t *testing.T, path, secret string, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatalf("write secret file: %v", err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatalf("chtimes secret file: %v", err)
	}
}

func (f *loginFixture) newCredential(t *testing.T) *Credential {
	t.Helper()
	cred, err := NewCredential(f.cc, f.cloud, f.hc)
	if err != nil {
		t.Fatalf("NewCredential: %v", err)
	}
	return cred
}

func (f *loginFixture) getToken(cred *Credential) (string, error) {
	tok, err := cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{f.cloud.Scope}})
	return tok.Token, err
}

// checkNoSecret fails when an error message holds a secret, without printing
// the secret.
func checkNoSecret(t *testing.T, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		return
	}
	for i, s := range secrets {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error message holds secret #%d", i+1)
		}
	}
}

func TestNewCredentialSecretFileErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	blank := filepath.Join(dir, "blank")
	for path, data := range map[string]string{empty: "", blank: " \n\t\n"} {
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// What an operator pastes where a file's path belongs: the secret
	// itself, or the certificate with its private key.
	const pastedSecret = "Abc8Q~pasted-secret-value"
	const pastedPEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"
	tests := []struct {
		name      string
		cc        CredentialConfig
		wantInErr string
	}{
		{name: "missing secret file", cc: CredentialConfig{ClientSecretFile: filepath.Join(dir, "missing")}, wantInErr: "clientSecretFile: the file it names could not be read: no such file"},
		{name: "secret pasted as its file", cc: CredentialConfig{ClientSecretFile: pastedSecret}, wantInErr: "clientSecretFile: the file it names could not be read"},
		{name: "empty secret file", cc: CredentialConfig{ClientSecretFile: empty}, wantInErr: "clientSecretFile: the file it names is empty"},
		{name: "blank secret file", cc: CredentialConfig{ClientSecretFile: blank}, wantInErr: "clientSecretFile: the file it names is empty"},
		{name: "missing certificate", cc: CredentialConfig{CertificateFile: filepath.Join(dir, "missing.pem")}, wantInErr: "certificateFile: the file it names could not be read: no such file"},
		{name: "certificate pasted as its file", cc: CredentialConfig{CertificateFile: pastedPEM}, wantInErr: "certificateFile: the file it names could not be read"},
		{name: "certificate that is not one", cc: CredentialConfig{CertificateFile: blank}, wantInErr: "certificateFile: no certificate and private key could be read"},
		{name: "missing certificate password", cc: CredentialConfig{CertificateFile: blank, CertificatePasswordFile: filepath.Join(dir, "missing")}, wantInErr: "certificatePasswordFile: the file it names could not be read"},
		{name: "certificate password pasted as its file", cc: CredentialConfig{CertificateFile: blank, CertificatePasswordFile: pastedSecret}, wantInErr: "certificatePasswordFile: the file it names could not be read"},
		{name: "no way set", cc: CredentialConfig{}, wantInErr: "exactly one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.cc.TenantID, tt.cc.ClientID = simTenantID, simClientID
			cred, err := NewCredential(tt.cc, Clouds["commercial"], nil)
			if err == nil {
				t.Fatalf("NewCredential = %v, want an error", cred)
			}
			if !strings.Contains(err.Error(), tt.wantInErr) {
				t.Errorf("error %q does not hold %q", err, tt.wantInErr)
			}
			// The setting is named, never what it holds.
			checkNoSecret(t, err, pastedSecret, "PRIVATE KEY", dir)
		})
	}
}

// t.Setenv: not parallel.
func TestNewCredentialSecretEnv(t *testing.T) {
	const name = "MDE_OFFBOARD_TEST_CLIENT_SECRET"
	cc := CredentialConfig{TenantID: simTenantID, ClientID: simClientID, ClientSecretEnv: name}

	t.Setenv(name, "  \n")
	_, err := NewCredential(cc, Clouds["commercial"], nil)
	if err == nil || !strings.Contains(err.Error(), "clientSecretEnv: the environment variable it names is empty") {
		t.Errorf("NewCredential with a blank variable: err = %v, want one naming clientSecretEnv", err)
	}
	// The variable's name is not shown: it may be the secret, pasted.
	checkNoSecret(t, err, name)

	f := setupLogin(t, "env-secret-value-1", "unused")
	t.Setenv(name, "env-secret-value-1\n")
	cred, err := NewCredential(cc, f.cloud, f.hc)
	if err != nil {
		t.Fatalf("NewCredential: %v", err)
	}
	if tok, err := f.getToken(cred); err != nil || tok == "" {
		checkNoSecret(t, err, "env-secret-value-1")
		t.Errorf("GetToken: err = %v, empty token %v", err, tok == "")
	}
}

func TestCredentialSecretFile(t *testing.T) {
	t.Parallel()

	t.Run("token obtained and cached", func(t *testing.T) {
		t.Parallel()
		const secret = "s3cret~value.0001"
		f := setupLogin(t, secret, secret)
		cred := f.newCredential(t)
		if n := f.sim.TokenRequests(simTenantID); n != 0 {
			t.Errorf("NewCredential made %d token requests, want 0", n)
		}
		tok, err := f.getToken(cred)
		if err != nil {
			checkNoSecret(t, err, secret)
			t.Fatalf("GetToken: %v", err)
		}
		if tok == "" {
			t.Fatalf("GetToken gave an empty token")
		}
		again, err := f.getToken(cred)
		if err != nil || again != tok {
			t.Errorf("second GetToken: err = %v, same token = %v; want the cached token", err, again == tok)
		}
		if n := f.sim.TokenRequests(simTenantID); n != 1 {
			t.Errorf("token requests = %d, want 1", n)
		}
	})

	t.Run("wrong secret is final", func(t *testing.T) {
		t.Parallel()
		const right, wrong = "right-secret-0001", "wrong-secret-0001"
		f := setupLogin(t, right, wrong)
		cred := f.newCredential(t)
		_, err := f.getToken(cred)
		if err == nil {
			t.Fatalf("GetToken with a wrong secret succeeded")
		}
		checkNoSecret(t, err, right, wrong)
		var te *TokenError
		if !errors.As(err, &te) {
			t.Fatalf("error is %T, want *TokenError", err)
		}
		if !te.Final {
			t.Errorf("Final = false for a refused secret, want true")
		}
		if !strings.HasPrefix(err.Error(), "get token: ") {
			t.Errorf("error %q does not say it is about the token", err)
		}
		if e := te.Unwrap(); e != nil {
			t.Errorf("Unwrap() = %T, want nil: the library's error can hold the login host's answer", e)
		}
	})

	t.Run("unknown application is final", func(t *testing.T) {
		t.Parallel()
		const secret = "right-secret-0002"
		f := setupLogin(t, secret, secret)
		f.cc.ClientID = "99999999-9999-9999-9999-999999999999"
		_, err := f.getToken(f.newCredential(t))
		checkNoSecret(t, err, secret)
		var te *TokenError
		if !errors.As(err, &te) || !te.Final {
			t.Errorf("GetToken for an unknown application: err = %v, want a final *TokenError", err)
		}
	})

	t.Run("login host unreachable is not final", func(t *testing.T) {
		t.Parallel()
		const secret = "right-secret-0003"
		f := setupLogin(t, secret, secret)
		cred := f.newCredential(t)
		f.sim.Close()
		// azcore retries a refused connection for about 8s; the deadline
		// cuts that short without changing the answer's class.
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		_, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{f.cloud.Scope}})
		checkNoSecret(t, err, secret)
		var te *TokenError
		if !errors.As(err, &te) {
			t.Fatalf("GetToken with the login host down: err = %v, want a *TokenError", err)
		}
		if te.Final {
			t.Errorf("Final = true for an unreachable login host, want false")
		}
	})

	t.Run("rotated secret picked up from the file", func(t *testing.T) {
		t.Parallel()
		// Same length, so only the modification time tells the change.
		const oldSecret, newSecret = "rotation-secret-A", "rotation-secret-B"
		f := setupLogin(t, oldSecret, oldSecret)
		cred := f.newCredential(t)
		first, err := f.getToken(cred)
		if err != nil {
			checkNoSecret(t, err, oldSecret, newSecret)
			t.Fatalf("GetToken: %v", err)
		}

		// The login host forgets the old secret; a fresh token request with
		// it now fails, and the file has not changed yet.
		f.sim.SetSecret(simTenantID, newSecret)
		if err := cred.Invalidate(); err != nil {
			t.Fatalf("Invalidate: %v", err)
		}
		_, err = f.getToken(cred)
		checkNoSecret(t, err, oldSecret, newSecret)
		var te *TokenError
		if !errors.As(err, &te) || !te.Final {
			t.Fatalf("GetToken with the old secret after rotation: err = %v, want a final *TokenError", err)
		}

		st, err := os.Stat(f.secretFile)
		if err != nil {
			t.Fatal(err)
		}
		writeSecretFile(t, f.secretFile, newSecret, st.ModTime().Add(time.Minute))
		second, err := f.getToken(cred)
		if err != nil {
			checkNoSecret(t, err, oldSecret, newSecret)
			t.Fatalf("GetToken after the secret file changed: %v", err)
		}
		if second == "" || second == first {
			t.Errorf("GetToken after the secret file changed gave the old or an empty token")
		}
		if n := f.sim.TokenRequests(simTenantID); n != 3 {
			t.Errorf("token requests = %d, want 3 (first, refused, after the change)", n)
		}
		if again, err := f.getToken(cred); err != nil || again != second {
			t.Errorf("GetToken after the change is not cached: err = %v", err)
		}
		if n := f.sim.TokenRequests(simTenantID); n != 3 {
			t.Errorf("token requests = %d, want still 3", n)
		}
	})

	t.Run("rotated file without invalidation", func(t *testing.T) {
		t.Parallel()
		const oldSecret, newSecret = "rotation-secret-C", "rotation-secret-D"
		f := setupLogin(t, oldSecret, oldSecret)
		cred := f.newCredential(t)
		if _, err := f.getToken(cred); err != nil {
			checkNoSecret(t, err, oldSecret, newSecret)
			t.Fatalf("GetToken: %v", err)
		}
		f.sim.SetSecret(simTenantID, newSecret)
		st, err := os.Stat(f.secretFile)
		if err != nil {
			t.Fatal(err)
		}
		writeSecretFile(t, f.secretFile, newSecret, st.ModTime().Add(time.Minute))
		// The file found unchanged a moment ago is trusted for lookEvery.
		if _, err := f.getToken(cred); err != nil {
			checkNoSecret(t, err, oldSecret, newSecret)
			t.Fatalf("GetToken right after the secret file changed: %v", err)
		}
		if n := f.sim.TokenRequests(simTenantID); n != 1 {
			t.Errorf("token requests = %d, want 1: the file is not looked at again within %v", n, lookEvery)
		}
		cred.mu.Lock()
		cred.now = func() time.Time { return time.Now().Add(lookEvery) }
		cred.mu.Unlock()
		if _, err := f.getToken(cred); err != nil {
			checkNoSecret(t, err, oldSecret, newSecret)
			t.Fatalf("GetToken after the secret file changed: %v", err)
		}
		if n := f.sim.TokenRequests(simTenantID); n != 2 {
			t.Errorf("token requests = %d, want 2: a changed file drops the cached token", n)
		}
	})

	// A rotated file whose size and modification time are those of the
	// one it replaces (cp -p, rsync -a, install -p, a timestamp too
	// coarse to tell two writes apart): the new secret is picked up,
	// replaced by a rename at once, rewritten in place at the latest
	// after the login host refused the old one; the tenant does not stay
	// on the old secret until a restart.
	for _, inPlace := range []bool{false, true} {
		name := "rotated file with the same size and time, replaced"
		if inPlace {
			name = "rotated file with the same size and time, rewritten in place"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			const oldSecret, newSecret = "rotation-secret-E", "rotation-secret-F"
			f := setupLogin(t, oldSecret, oldSecret)
			cred := f.newCredential(t)
			if _, err := f.getToken(cred); err != nil {
				checkNoSecret(t, err, oldSecret, newSecret)
				t.Fatalf("GetToken: %v", err)
			}
			f.sim.SetSecret(simTenantID, newSecret)
			if err := cred.Invalidate(); err != nil { // the token expired
				t.Fatalf("Invalidate: %v", err)
			}
			st, err := os.Stat(f.secretFile)
			if err != nil {
				t.Fatal(err)
			}
			if inPlace {
				writeSecretFile(t, f.secretFile, newSecret, st.ModTime())
			} else {
				tmp := f.secretFile + ".tmp"
				writeSecretFile(t, tmp, newSecret, st.ModTime())
				if err := os.Rename(tmp, f.secretFile); err != nil {
					t.Fatal(err)
				}
			}
			tries := 1
			if inPlace {
				tries = 2
			}
			var tok string
			for range tries {
				if tok, err = f.getToken(cred); err == nil {
					break
				}
				checkNoSecret(t, err, oldSecret, newSecret)
			}
			if err != nil || tok == "" {
				t.Errorf("GetToken after the secret file changed (%d tries): err = %v, want the new secret's token", tries, err)
			}
		})
	}

	t.Run("secret file removed", func(t *testing.T) {
		t.Parallel()
		const secret = "right-secret-0004"
		f := setupLogin(t, secret, secret)
		cred := f.newCredential(t)
		tok, err := f.getToken(cred)
		if err != nil {
			checkNoSecret(t, err, secret)
			t.Fatalf("GetToken: %v", err)
		}
		if err := os.Remove(f.secretFile); err != nil {
			t.Fatal(err)
		}
		// The token the file's secret got serves until it expires.
		if again, err := f.getToken(cred); err != nil || again != tok {
			t.Errorf("GetToken without the secret file, a token cached: err = %v, same token %v; want the cached token", err, again == tok)
		}
		// Once the API refuses it, nothing is left to hand out.
		if err := cred.Invalidate(); err == nil {
			t.Error("Invalidate without the secret file: no error")
		}
		_, err = f.getToken(cred)
		var te *TokenError
		if !errors.As(err, &te) {
			t.Fatalf("GetToken without the secret file after Invalidate: err = %v, want a *TokenError", err)
		}
		if n := f.sim.TokenRequests(simTenantID); n != 1 {
			t.Errorf("token requests = %d, want 1: an unreadable secret sends nothing", n)
		}
	})

	t.Run("Invalidate forces a new token request", func(t *testing.T) {
		t.Parallel()
		const secret = "right-secret-0005"
		f := setupLogin(t, secret, secret)
		cred := f.newCredential(t)
		first, err := f.getToken(cred)
		if err != nil {
			checkNoSecret(t, err, secret)
			t.Fatalf("GetToken: %v", err)
		}
		if _, err := f.getToken(cred); err != nil {
			t.Fatalf("GetToken: %v", err)
		}
		if n := f.sim.TokenRequests(simTenantID); n != 1 {
			t.Fatalf("token requests = %d before Invalidate, want 1", n)
		}
		if err := cred.Invalidate(); err != nil {
			t.Fatalf("Invalidate: %v", err)
		}
		if n := f.sim.TokenRequests(simTenantID); n != 1 {
			t.Errorf("Invalidate itself made a token request (%d), want none", n)
		}
		second, err := f.getToken(cred)
		if err != nil {
			t.Fatalf("GetToken after Invalidate: %v", err)
		}
		if n := f.sim.TokenRequests(simTenantID); n != 2 {
			t.Errorf("token requests = %d after Invalidate, want 2", n)
		}
		if second == first {
			t.Errorf("GetToken after Invalidate returned the cached token")
		}
	})

	t.Run("concurrent use while the file changes", func(t *testing.T) {
		t.Parallel()
		const oldSecret, newSecret = "concurrent-secret-A", "concurrent-secret-B"
		f := setupLogin(t, oldSecret, oldSecret)
		f.sim.AddSecret(simTenantID, newSecret) // both live during the rotation
		cred := f.newCredential(t)
		st, err := os.Stat(f.secretFile)
		if err != nil {
			t.Fatal(err)
		}

		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for range 8 {
			wg.Go(func() {
				for range 4 {
					if _, err := f.getToken(cred); err != nil {
						errs <- err
					}
				}
			})
		}
		// Write the new secret to a temporary file and rename it into
		// place, as a Kubernetes secret volume does, so no reader sees a
		// half-written file.
		tmp := f.secretFile + ".tmp"
		writeSecretFile(t, tmp, newSecret, st.ModTime().Add(time.Minute))
		if err := os.Rename(tmp, f.secretFile); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if err := cred.Invalidate(); err != nil {
				errs <- err
			}
		})
		wg.Wait()
		close(errs)
		for err := range errs {
			checkNoSecret(t, err, oldSecret, newSecret)
			t.Errorf("GetToken: %v", err)
		}
		if _, err := f.getToken(cred); err != nil {
			t.Errorf("GetToken after the rotation: %v", err)
		}
	})
}

// The credential and the client together against the simulator: the token
// it issues is accepted by its API, and a refused secret sends no API call.
func TestCredentialWithClient(t *testing.T) {
	t.Parallel()

	t.Run("offboard", func(t *testing.T) {
		t.Parallel()
		const secret = "e2e-secret-0001"
		f := setupLogin(t, secret, secret)
		f.sim.AddMachine(simTenantID, mdesim.Machine{ID: testMachineID, ComputerDNSName: "pc.contoso.local"})
		client := NewClient(Options{Cloud: f.cloud, Credential: f.newCredential(t), HTTPClient: f.hc})

		a := client.Offboard(context.Background(), testMachineID, `Retired "pc" ✓`)
		if a.Class != Success {
			checkNoSecret(t, a, secret)
			t.Fatalf("Offboard: %s (%v), want success", a.Error(), a.Class)
		}
		act, err := ParseAction(a.Body)
		if err != nil {
			t.Fatalf("ParseAction(%s): %v", a.Body, err)
		}
		if act.Type != "Offboard" || act.Status != "Pending" || act.MachineID != "" || act.Created().IsZero() {
			t.Errorf("action = %+v, want a Pending Offboard with a null machineId and a creation time", act)
		}

		a = client.OffboardActions(context.Background(), testMachineID)
		if a.Class != Success {
			t.Fatalf("OffboardActions: %v", a.Error())
		}
		list, err := ParseActions(a.Body)
		if err != nil || len(list) != 1 || list[0].ID != act.ID || list[0].MachineID != testMachineID {
			t.Errorf("OffboardActions = %+v, %v; want the one action %s", list, err, act.ID)
		}

		a = client.FindMachinesByName(context.Background(), "pc.contoso.local")
		if a.Class != Success {
			t.Fatalf("FindMachinesByName: %v", a.Error())
		}
		if n := a.Named; n == nil || n.Err != nil || n.Count != 1 || len(n.Machines) != 1 || n.Machines[0].ID != testMachineID {
			t.Errorf("FindMachinesByName = %+v", n)
		}

		if n := f.sim.TokenRequests(simTenantID); n != 1 {
			t.Errorf("token requests = %d for three calls, want 1", n)
		}
	})

	t.Run("refused secret sends no API call", func(t *testing.T) {
		t.Parallel()
		const right, wrong = "e2e-secret-0002", "e2e-secret-0003"
		f := setupLogin(t, right, wrong)
		client := NewClient(Options{Cloud: f.cloud, Credential: f.newCredential(t), HTTPClient: f.hc})
		v := client.Offboard(context.Background(), testMachineID, "c")
		checkNoSecret(t, v, right, wrong)
		if v.Sent || v.Class != Final || v.Reason != ReasonCredentialsRejected {
			t.Errorf("Offboard with a refused secret: verdict %v/%v (sent %v), want final credentials_rejected, not sent", v.Class, v.Reason, v.Sent)
		}
		if calls := f.sim.Calls(); len(calls) != 0 {
			t.Errorf("the API got %d calls, want 0", len(calls))
		}
	})
}

// A scope of another resource (a scope or apiBaseURL setting of another
// cloud or service) gets a token, as Entra ID issues one for any resource
// in the tenant, and the API refuses it: unauthorized, the call sent. A
// resource the tenant does not have is refused by the login host
// (AADSTS500011), a scope without "/.default" too (AADSTS70011): nothing
// is sent.
func TestCredentialWithClientOfAnotherScope(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		scope  string
		reason Reason
		sent   bool
		aadsts string
	}{
		{"https://graph.microsoft.com/.default", ReasonUnauthorized, true, ""},
		{"https://unknown.contoso.example/.default", ReasonCredentialsRejected, false, "AADSTS500011"},
		{"https://api.securitycenter.microsoft.com/Machine.Offboard", ReasonCredentialsRejected, false, "AADSTS70011"},
	} {
		t.Run(tt.scope, func(t *testing.T) {
			t.Parallel()
			const secret = "e2e-secret-0002"
			f := setupLogin(t, secret, secret)
			f.sim.AddMachine(simTenantID, mdesim.Machine{ID: testMachineID, ComputerDNSName: "pc.contoso.local"})
			// Set as it is: ResolveCloud refuses a scope without
			// "/.default" before any token request.
			f.cloud.Scope = tt.scope
			client := NewClient(Options{Cloud: f.cloud, Credential: f.newCredential(t), HTTPClient: f.hc})
			v := client.Offboard(context.Background(), testMachineID, "c")
			checkNoSecret(t, v, secret)
			if v.Class != Final || v.Reason != tt.reason || v.Sent != tt.sent || v.FailureCode != offboard.CodeUnauthorized {
				t.Errorf("verdict %v/%v %q (sent %v, %s), want final %v (sent %v)", v.Class, v.Reason, v.FailureCode, v.Sent, v.Error(), tt.reason, tt.sent)
			}
			if tt.sent && (v.Status != 401 || !v.RefreshToken) {
				t.Errorf("status %d, refresh %v; want 401, refresh", v.Status, v.RefreshToken)
			}
			if !strings.Contains(v.Error(), tt.aadsts) {
				t.Errorf("Error() = %q, want %q in it", v.Error(), tt.aadsts)
			}
			if n := len(f.sim.Actions(simTenantID)); n != 0 {
				t.Errorf("%d actions made with a token of another resource", n)
			}
		})
	}
}
