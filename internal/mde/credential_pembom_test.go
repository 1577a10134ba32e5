package mde

import (
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf16"
)

// TestCertificatePEMFileWithAByteOrderMark: a PEM certificate file that
// Notepad saved ("UTF-8 with BOM"), or that PowerShell 5 wrote with >
// or Out-File (UTF-16 with its mark, the certificate and the key put
// together with Get-Content), is read as the text it holds, its
// certificate signing in. The mark before the first block hid it from
// the PEM reader: the start failed, "no certificate and private key could
// be read from the file it names (wrong format or password)".
func TestCertificatePEMFileWithAByteOrderMark(t *testing.T) {
	t.Parallel()
	utf16le := func(s string) []byte {
		b := []byte{0xff, 0xfe}
		for _, u := range utf16.Encode([]rune(s)) {
			b = append(b, byte(u), byte(u>>8))
		}
		return b
	}
	utf16be := func(s string) []byte {
		b := []byte{0xfe, 0xff}
		for _, u := range utf16.Encode([]rune(s)) {
			b = append(b, byte(u>>8), byte(u))
		}
		return b
	}
	refused := 0
	for name, encode := range map[string]func(string) []byte{
		"utf-8 with its mark": func(s string) []byte { return []byte("\ufeff" + s) },
		"utf-16le":            utf16le,
		"utf-16be":            utf16be,
		"utf-16le, crlf":      func(s string) []byte { return utf16le(strings.ReplaceAll(s, "\n", "\r\n")) },
	} {
		t.Run(name, func(t *testing.T) {
			f := setupCertLogin(t)
			data, err := os.ReadFile(f.certFile)
			if err != nil {
				t.Fatal(err)
			}
			replaceFile(t, f.certFile, encode(string(data)))
			if err := f.cc.CheckFiles(time.Now()); err != nil {
				t.Errorf("CheckFiles: %v", err)
			}
			cred, err := NewCredential(f.cc, f.cloud, f.hc)
			if err != nil {
				refused++
				t.Fatalf("NewCredential: %v", err)
			}
			if _, err := f.getToken(cred); err != nil {
				t.Errorf("GetToken: %v", err)
			}
		})
	}
	t.Logf("%d of 4 PEM files with a byte order mark refused", refused)
}
