package app

import (
	"os"
	"path/filepath"
	"testing"
	"unicode/utf16"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/internal/testcert"
)

// TestCAFileWithAByteOrderMark: a CA bundle saved by Notepad (UTF-8
// with its mark) or written by PowerShell 5 (UTF-16 with its mark) is
// read as the text it holds. The mark hid the first certificate: a
// bundle of one was refused, and in a longer one the first CA (a
// TLS-inspecting proxy's, put first) was left out without a word, every
// call to the login and API hosts then failing the TLS handshake.
func TestCAFileWithAByteOrderMark(t *testing.T) {
	sim := mdesim.New(mdesim.Options{})
	base := sim.StartTLS()
	t.Cleanup(sim.Close)
	ca := string(sim.CertPEM())
	utf16le := []byte{0xff, 0xfe}
	for _, u := range utf16.Encode([]rune(ca)) {
		utf16le = append(utf16le, byte(u), byte(u>>8))
	}
	dir := t.TempDir()
	_, other := testcert.Write(t, filepath.Join(dir, "other.pem"), "another CA")
	failed := 0
	for name, data := range map[string][]byte{
		"utf-8 with its mark":           []byte("\ufeff" + ca),
		"utf-16le":                      utf16le,
		"utf-8 with its mark, a bundle": []byte("\ufeff" + ca + string(other)),
	} {
		file := filepath.Join(dir, name)
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		clients, err := transports([]*config.Tenant{{Name: "contoso", CAFile: file}}, -1, mde.DefaultTimeout)
		if err != nil {
			failed++
			t.Errorf("%s: %v", name, err)
			continue
		}
		resp, err := clients[file].Get(base + "/api/machines")
		if err != nil {
			failed++
			t.Errorf("%s: a call to the host the bundle's CA certifies: %v", name, err)
			continue
		}
		_ = resp.Body.Close()
		clients[file].CloseIdleConnections()
	}
	t.Logf("%d of 3 CA bundles with a byte order mark unusable", failed)
}
