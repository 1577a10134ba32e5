package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/testcert"
)

// exampleSecrets is where deploy/worker.yaml's tenants find their
// secret and certificate files, as the Deployment mounts them.
const exampleSecrets = "/var/run/secrets/mde-offboard/"

// exampleConfig returns a copy of deploy/worker.yaml whose credential
// files are in a temporary directory and hold what they should:
// --check-config reads them.
func exampleConfig(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../../deploy/worker.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	secrets := filepath.Join(dir, "secrets") + "/"
	if err := os.MkdirAll(filepath.Join(secrets, "contoso"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(secrets, "contoso", "client-secret"), []byte("example-secret-0001\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	testcert.Write(t, filepath.Join(secrets, "contoso-gov", "certificate.pem"), "mde-offboard-test")
	path := filepath.Join(dir, "worker.yaml")
	if err := os.WriteFile(path, bytes.ReplaceAll(data, []byte(exampleSecrets), []byte(secrets)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCheckConfigReadsTheFilesItNames: --check-config reads the files
// the tenants file names, as the start does: a secret, certificate,
// password or token file missing, empty or not what it should be, and a
// caFile that holds no PEM certificate, each exit 2 with one line naming
// the tenant and the setting, never the path or what the file holds.
// Before, the check said valid and the start failed (or, for a token
// file, the first request).
func TestCheckConfigReadsTheFilesItNames(t *testing.T) {
	dir := t.TempDir()
	const secret, token = "Zx9~check-secret-0001", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0In0.check-sig"
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	secretFile, tokenFile := write("secret", secret+"\n"), write("token", token)
	empty, notPEM := write("empty", ""), write("not-a-cert.pem", secret+"\n")
	cert := filepath.Join(dir, "cert.pem")
	_, caPEM := testcert.Write(t, cert, "mde-offboard-test")
	ca := write("ca.pem", string(caPEM))
	tenant := func(name, settings string) string {
		return fmt.Sprintf("  - name: %s\n    tenantId: 11111111-2222-3333-4444-%012d\n    clientId: 66666666-7777-8888-9999-000000000000\n%s",
			name, len(name), settings)
	}
	good := "tenants:\n" +
		tenant("a", "    clientSecretFile: "+secretFile+"\n") +
		tenant("bb", "    certificateFile: "+cert+"\n") +
		tenant("ccc", "    workloadIdentity: true\n    tokenFile: "+tokenFile+"\n") +
		tenant("dddd", "    clientSecretFile: "+secretFile+"\n    caFile: "+ca+"\n")
	path := write("good.yaml", good)
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--check-config", "--config", path}, &stdout, &stderr); code != 0 {
		t.Fatalf("every file good: exit code %d, stderr %q", code, stderr.String())
	}

	bad := "tenants:\n" +
		tenant("a", "    clientSecretFile: "+filepath.Join(dir, "missing")+"\n") +
		tenant("bb", "    certificateFile: "+notPEM+"\n") +
		tenant("ccc", "    workloadIdentity: true\n    tokenFile: "+empty+"\n") +
		tenant("dddd", "    clientSecretFile: "+secretFile+"\n    caFile: "+notPEM+"\n") +
		tenant("eeeee", "    certificateFile: "+cert+"\n    certificatePasswordFile: "+secret+"\n")
	path = write("bad.yaml", bad)
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"--check-config", "--config", path}, &stdout, &stderr); code != 2 {
		t.Fatalf("bad files: exit code %d, want 2; stderr %q", code, stderr.String())
	}
	want := []string{
		"worker: " + path + ": tenant a: credentials: clientSecretFile: the file it names could not be read: no such file or directory",
		"worker: " + path + ": tenant bb: credentials: certificateFile: no certificate and private key could be read from the file it names (wrong format or password)",
		"worker: " + path + ": tenant ccc: credentials: tokenFile: the file it names is empty",
		"worker: " + path + ": tenant dddd: caFile: no PEM certificate in the file it names",
		"worker: " + path + ": tenant eeeee: credentials: certificatePasswordFile: the file it names could not be read: no such file or directory",
	}
	if got := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("stderr:\n%s\nwant:\n%s", stderr.String(), strings.Join(want, "\n"))
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout %q, want nothing", stdout.String())
	}
	for _, s := range []string{secret, token, "BEGIN", "MII"} {
		if strings.Contains(stderr.String(), s) {
			t.Errorf("stderr shows what a file holds (%.4s...)", s)
		}
	}

	// Where the files are not mounted (a workstation, CI), the file and
	// the flags alone are checked.
	stdout.Reset()
	stderr.Reset()
	if code := run([]string{"--check-config", "--skip-file-checks", "--config", path}, &stdout, &stderr); code != 0 {
		t.Errorf("bad files, --skip-file-checks: exit code %d, want 0; stderr %q", code, stderr.String())
	}
	if want := "worker: " + path + ": valid, 5 tenant(s)\n"; stdout.String() != want {
		t.Errorf("bad files, --skip-file-checks: stdout %q, want %q", stdout.String(), want)
	}

	// The start always reads the files: the flag alone is bad usage.
	stderr.Reset()
	if code := run([]string{"--skip-file-checks", "--config", path}, io.Discard, &stderr); code != 2 || strings.Count(stderr.String(), "\n") != 1 || !strings.Contains(stderr.String(), "only with --check-config") {
		t.Errorf("--skip-file-checks alone: exit code %d, stderr %q; want 2 and one line", code, stderr.String())
	}

	// A secrets volume missing for many tenants gives the first ten
	// lines and how many more.
	var many strings.Builder
	many.WriteString("tenants:\n")
	for i := range 12 {
		fmt.Fprintf(&many, "  - name: t%d\n    tenantId: 11111111-2222-3333-4444-%012d\n    clientId: 66666666-7777-8888-9999-000000000000\n    clientSecretFile: %s\n",
			i, i, filepath.Join(dir, "missing"))
	}
	path = write("many.yaml", many.String())
	stderr.Reset()
	if code := run([]string{"--check-config", "--config", path}, io.Discard, &stderr); code != 2 {
		t.Fatalf("many tenants: exit code %d, want 2", code)
	}
	if lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n"); len(lines) != 11 || lines[10] != "worker: "+path+": and 2 more" {
		t.Errorf("many tenants: %d lines, last %q; want 11, the last \"and 2 more\"", len(lines), lines[len(lines)-1])
	}
}
