//go:build unix

package mde

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A workload identity's token file that cannot be used when the
// credential is built (missing, empty, not a regular file, no JWT) fails
// NewCredential, naming tokenFile and the reason, never the path or what
// the file holds: a projected service account token is mounted before
// the container starts, so one missing then is a misconfiguration.
// Before, the file was first read at the first token request: the worker
// started, /readyz said ready, and every request of the tenant failed.
func TestWorkloadIdentityTokenFileCheckedAtStart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	empty, blank := filepath.Join(dir, "empty"), filepath.Join(dir, "blank")
	// The other files of a service account's volume, named in the
	// token's place.
	caCrt, namespace := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "namespace")
	twoParts := filepath.Join(dir, "two-parts")
	for path, data := range map[string]string{
		empty: "", blank: " \n\t\n",
		caCrt: "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUeyJ0b2tlbiI6\n-----END CERTIFICATE-----\n", namespace: "default\n",
		twoParts: "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0In0\n",
	} {
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A token pasted where its file's path belongs.
	const pasted = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJwYXN0ZWQifQ.pasted-sig"
	cases := map[string]struct{ path, want string }{
		"missing":         {filepath.Join(dir, "missing"), "tokenFile: the file it names could not be read: no such file or directory"},
		"token as a path": {pasted, "tokenFile: the file it names could not be read"},
		"empty":           {empty, "tokenFile: the file it names is empty"},
		"blank":           {blank, "tokenFile: the file it names is empty"},
		"directory":       {dir, "tokenFile: the file it names is not a regular file"},
		"ca.crt":          {caCrt, "tokenFile: the file it names holds no token"},
		"namespace":       {namespace, "tokenFile: the file it names holds no token"},
		"two parts":       {twoParts, "tokenFile: the file it names holds no token"},
	}
	for kind, path := range notCredentialFiles(t, dir, maxSecretFile) {
		cases[kind] = struct{ path, want string }{path, wantInError("tokenFile", kind, "64 KiB")}
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cc := CredentialConfig{TenantID: simTenantID, ClientID: simClientID, WorkloadIdentity: true, TokenFile: tc.path}
			err := returnsSoon(t, filepath.Join(dir, "fifo"), func() error {
				_, err := NewCredential(cc, Clouds["commercial"], nil)
				return err
			})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewCredential: err = %v, want one holding %q", err, tc.want)
			}
			checkNoSecret(t, err, dir, pasted, "eyJ", "MII", "default")
		})
	}
}
