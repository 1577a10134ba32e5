package queue

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/testcert"
)

// A --tlsca without a PEM certificate, or a --tlscert and --tlskey that
// are not a certificate and its key, are refused by Check, one line
// naming the flags, not the paths: the worker's --check-config said
// valid, and the start then failed at the connection, exit 1, naming the
// path ("nats: failed to parse root certificate from ..."), as if the
// server were down.
func TestCheckReadsTheTLSFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "client.pem") // a certificate and its key
	testcert.Write(t, good, "client")
	_, otherCert := testcert.Write(t, filepath.Join(dir, "other.pem"), "other")
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	text := write("text.pem", "not a certificate\n")
	cut := write("cut.pem", "-----BEGIN CERTIFICATE-----\n")
	// other's certificate alone, without its key
	certOnly := write("cert-only.pem", string(otherCert))
	for _, tt := range []struct {
		name string
		conn Conn
		flag string
	}{
		{"ca of text", Conn{TLSCA: text}, "--tlsca"},
		{"ca cut short", Conn{TLSCA: cut}, "--tlsca"},
		{"certificate of text", Conn{TLSCert: text, TLSKey: good}, "--tlscert"},
		{"key of text", Conn{TLSCert: good, TLSKey: text}, "--tlskey"},
		{"key of another certificate", Conn{TLSCert: certOnly, TLSKey: good}, "--tlskey"},
		{"certificate without a key", Conn{TLSCert: certOnly, TLSKey: certOnly}, "--tlskey"},
	} {
		err := tt.conn.Check()
		if err == nil {
			t.Errorf("%s: Check = nil, want a refusal naming %s", tt.name, tt.flag)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, tt.flag) || strings.Contains(msg, "\n") || strings.Contains(msg, dir) {
			t.Errorf("%s: Check = %q, want one line naming %s and no path", tt.name, msg, tt.flag)
		}
	}
	if err := (Conn{TLSCA: good, TLSCert: good, TLSKey: good}).Check(); err != nil {
		t.Errorf("a certificate and its key: Check = %v", err)
	}
}
