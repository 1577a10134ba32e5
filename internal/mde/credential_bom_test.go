package mde

import (
	"errors"
	"os"
	"strings"
	"testing"
	"unicode/utf16"
)

// A secret file saved with a UTF-8 byte order mark (Notepad, PowerShell
// 5's Set-Content -Encoding UTF8) holds the secret after the mark: the
// mark is not sent as part of it.
func TestClientSecretFileWithAByteOrderMark(t *testing.T) {
	t.Parallel()
	for name, content := range map[string]string{
		"BOM":          "\ufeffs3cret",
		"BOM and CRLF": "\ufeffs3cret\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := setupLogin(t, "s3cret", "x")
			if err := os.WriteFile(f.secretFile, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			cred := f.newCredential(t)
			if tok, err := f.getToken(cred); err != nil || tok == "" {
				t.Errorf("GetToken: err = %v, empty token %v", err, tok == "")
			}
		})
	}
}

// utf16File is text as UTF-16 with its byte order mark, little-endian
// (as PowerShell 5's > and Out-File write a file) or big-endian.
func utf16File(text string, bigEndian bool) string {
	var b strings.Builder
	for _, u := range utf16.Encode([]rune("\ufeff" + text)) {
		lo, hi := byte(u), byte(u>>8)
		if bigEndian {
			lo, hi = hi, lo
		}
		b.WriteByte(lo)
		b.WriteByte(hi)
	}
	return b.String()
}

// A secret file written as UTF-16 (PowerShell 5's `"..." > file`, a
// file then mounted from a Kubernetes Secret) holds the secret: it is
// read as such, not refused as "binary data, a PKCS#12 certificate or a
// key", which it is not.
func TestClientSecretFileInUTF16(t *testing.T) {
	t.Parallel()
	for name, content := range map[string]string{
		"little-endian with CRLF": utf16File("s3cret~Q.1\r\n", false),
		"little-endian":           utf16File("s3cret~Q.1", false),
		"big-endian with LF":      utf16File("s3cret~Q.1\n", true),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := setupLogin(t, "s3cret~Q.1", "x")
			if err := os.WriteFile(f.secretFile, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			cred, err := NewCredential(f.cc, f.cloud, f.hc)
			if err != nil {
				t.Fatalf("NewCredential: %v", err)
			}
			if tok, err := f.getToken(cred); err != nil || tok == "" {
				t.Errorf("GetToken: err = %v, empty token %v", err, tok == "")
			}
		})
	}

	// What is no text in UTF-16 either is still refused, unsent.
	t.Run("binary after the mark", func(t *testing.T) {
		t.Parallel()
		f := setupLogin(t, "s3cret~Q.1", "x")
		if err := os.WriteFile(f.secretFile, []byte("\xff\xfe\x00\x00\x01\x00s\x00"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := NewCredential(f.cc, f.cloud, f.hc)
		if err == nil || !strings.Contains(err.Error(), "binary data") {
			t.Errorf("NewCredential: err = %v, want binary data refused", err)
		}
		var te *TokenError
		if errors.As(err, &te) || f.sim.TokenRequests(simTenantID) != 0 {
			t.Errorf("a token was asked for: err %v, %d requests", err, f.sim.TokenRequests(simTenantID))
		}
	})
}

// A client secret in an environment variable that came from a file
// saved with a UTF-8 byte order mark (a Kubernetes Secret made with
// kubectl create secret --from-file from a Notepad file, mapped to the
// variable) holds the secret after the mark, as the secret file does:
// the mark is not sent as part of it. t.Setenv: not parallel.
func TestClientSecretEnvWithAByteOrderMark(t *testing.T) {
	const name = "MDE_OFFBOARD_TEST_CLIENT_SECRET_BOM"
	for label, value := range map[string]string{
		"BOM":          "\ufeffs3cret",
		"BOM and CRLF": "\ufeffs3cret\r\n",
	} {
		t.Run(label, func(t *testing.T) {
			t.Setenv(name, value)
			f := setupLogin(t, "s3cret", "x")
			f.cc.ClientSecretFile, f.cc.ClientSecretEnv = "", name
			cred := f.newCredential(t)
			if tok, err := f.getToken(cred); err != nil || tok == "" {
				t.Errorf("GetToken: err = %v, empty token %v", err, tok == "")
			}
		})
	}
}
