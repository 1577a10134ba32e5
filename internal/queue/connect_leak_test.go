package queue

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/testcert"
)

// No part of a password or token reaches Check's error or RedactURLs, nor
// (Check refusing it first) the dial error of a host taken from it: a ','
// in a token or after a password's digits, two ',', a '/', '?' or '#'
// ending the authority early. A schemeless URL with a user after another
// URL cannot be told from these: it is refused too. Nor does a
// password that reads as a port, its '@' and host left out, nor the
// part of it after a '/'.
func TestCheckRefusesURLsThatLeakAPassword(t *testing.T) {
	t.Parallel()
	for _, u := range []string{
		"nats://alice:S3CR3T,b,c@nats.example:4222",
		"alice:S3CR3T,b,c@nats.example:4222",
		"nats://alice:4222,S3CR3T@nats.example:4222",
		"nats://alice:4222,S3CR3T:x@nats.example:4222",
		"nats://S3CR3T,tok@nats.example:4222",
		"nats://S3CR3T/tok@nats.example:4222",
		"nats://S3CR3T?tok@nats.example:4222",
		"nats://S3CR3T#tok@nats.example:4222",
		"nats://alice:4222/S3CR3T@nats.example:4222",
		"nats://n1:4222, b:S3CR3T@n2:4222",
		"nats://n1,b:S3CR3T@n2",
		// An at sign of another width where the '@' belongs (typed with
		// an East Asian input method): no '@' ends the credential.
		"nats://S3CR3T\uff20nats.example:4222",
		"nats://alice:S3CR3T\uff20nats.example:4222",
		"alice:S3CR3T\ufe6bnats.example:4222",
		"S3CR3T\ufe6bnats.example",
		"nats://n1:4222,nats://S3CR3T\uff20n2:4222",
		"nats://alice:S3CR3T,x\uff20nats.example:4222",
		// A user and password whose '@' and host were left out: the
		// password reads as the port.
		"nats://alice:S3CR3T",
		"alice:S3CR3T",
		"nats://n1:4222,nats://alice:S3CR3T",
		"tls://alice:S3CR3T/",
		// Such a password with a '/' in it (base64's): the part after
		// the '/' read as the path.
		"nats://alice:pw/S3CR3T",
		"alice:pw/S3CR3T",
		"nats://n1:4222,nats://alice:pw/x/S3CR3T",
	} {
		err := Conn{URL: u}.Check()
		if err == nil {
			t.Errorf("Check(%q) = nil", u)
		} else if strings.Contains(err.Error(), "S3CR3T") || strings.Contains(err.Error(), "alice") || strings.Contains(err.Error(), "4222,") {
			t.Errorf("Check(%q) = %v", u, err)
		}
		if r := RedactURLs(u); strings.Contains(r, "S3CR3T") || strings.Contains(r, "alice") {
			t.Errorf("RedactURLs(%q) = %q", u, r)
		}
	}
}

// A credentials file's or a key's content given where its path belongs
// (a variable set from a secret's value instead of a mounted file) is
// refused by Check with one line naming the setting, not the content:
// the client library's error would quote it whole, nkey seed and all.
func TestCheckShowsNoContentGivenAsAFile(t *testing.T) {
	t.Parallel()
	const creds = "-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.S3CR3TJWT\n------END NATS USER JWT------\n" +
		"-----BEGIN USER NKEY SEED-----\nSUAS3CR3TSEED\n------END USER NKEY SEED------\n"
	const key = "-----BEGIN PRIVATE KEY-----\nS3CR3TKEY\n-----END PRIVATE KEY-----\n"
	existing := filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(existing, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		flag string
		conn Conn
	}{
		{"--nats-creds", Conn{Creds: creds}},
		{"--tlsca", Conn{TLSCA: key}},
		{"--tlscert", Conn{TLSCert: key, TLSKey: existing}},
		{"--tlskey", Conn{TLSCert: existing, TLSKey: key}},
	} {
		err := tt.conn.Check()
		if err == nil {
			t.Errorf("%s: Check = nil", tt.flag)
			continue
		}
		if msg := err.Error(); strings.Contains(msg, "S3CR3T") || strings.Contains(msg, "\n") || !strings.Contains(msg, tt.flag) {
			t.Errorf("%s: Check = %q, want one line naming the setting, not its value", tt.flag, msg)
		}
	}
	credsFile := filepath.Join(t.TempDir(), "user.creds")
	if err := os.WriteFile(credsFile, []byte(nscCreds("SUAEXAMPLESEED")), 0o600); err != nil {
		t.Fatal(err)
	}
	certFile := filepath.Join(t.TempDir(), "client.pem")
	testcert.Write(t, certFile, "client")
	if err := (Conn{Creds: credsFile, TLSCA: certFile, TLSCert: certFile, TLSKey: certFile}).Check(); err != nil {
		t.Errorf("files that exist: Check = %v", err)
	}
}

// A credentials file's path is taken as the client library takes it,
// with its variables and a leading '~' expanded.
func TestCheckExpandsTheCredentialsPath(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("MDE_TEST_CREDS_DIR", home)
	if err := os.WriteFile(filepath.Join(home, "user.creds"), []byte(nscCreds("SUAEXAMPLESEED")), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"~/user.creds", "$MDE_TEST_CREDS_DIR/user.creds", "${HOME}/user.creds"} {
		if err := (Conn{Creds: p}).Check(); err != nil {
			t.Errorf("--nats-creds %s: Check = %v", p, err)
		}
	}
}

// A token in a URL's query or fragment (a websocket proxy's, sent in the
// handshake) is not shown by RedactURLs, nor is a password whose '?' or
// '#' came before its '@'; the host is.
func TestRedactURLsShowsNoQuery(t *testing.T) {
	t.Parallel()
	for u, want := range map[string]string{
		"wss://nats.example/nats?token=S3CR3T":          "wss://nats.example/nats",
		"nats://nats.example:4222/?token=S3CR3T":        "nats://nats.example:4222/",
		"nats://nats.example:4222#S3CR3T":               "nats://nats.example:4222",
		"nats.example:4222?S3CR3T":                      "nats.example:4222",
		"nats://alice:pw@nats.example:4222/?t=S3CR3T":   "nats://nats.example:4222/",
		"nats://n1:4222,wss://n2/nats?token=S3CR3T&x=1": "nats://n1:4222,wss://n2/nats",
		"nats://S3CR3T?tok@nats.example:4222":           "nats://nats.example:4222",
	} {
		if got := RedactURLs(u); got != want {
			t.Errorf("RedactURLs(%q) = %q, want %q", u, got, want)
		}
	}
}
