package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf16"
)

// TestClientSecretFileReadAsTheWorkerReadsIt: one file given to both,
// as --client-secret-file and as a tenant's clientSecretFile, is one
// secret. A file Notepad or PowerShell 5 saved starts with a byte order
// mark, which the worker leaves out (and reads UTF-16 as its text):
// the simulator kept the mark, and refused every token request of the
// worker as a wrong secret (AADSTS7000215).
func TestClientSecretFileReadAsTheWorkerReadsIt(t *testing.T) {
	const secret = "Xy7Q~simSecret.value-0123456789"
	utf16le := []byte{0xff, 0xfe}
	for _, u := range utf16.Encode([]rune(secret + "\r\n")) {
		utf16le = append(utf16le, byte(u), byte(u>>8))
	}
	dir := t.TempDir()
	wrong := 0
	for name, content := range map[string][]byte{
		"plain":    []byte(secret + "\n"),
		"utf8-bom": []byte("\ufeff" + secret + "\r\n"),
		"utf16le":  utf16le,
	} {
		file := filepath.Join(dir, name)
		if err := os.WriteFile(file, content, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := parseFlags([]string{"--client-secret-file", file}, &bytes.Buffer{})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if c.secret != secret {
			wrong++
			t.Errorf("%s: the simulator takes a secret of %d bytes, want the %d the worker sends", name, len(c.secret), len(secret))
		}
	}
	t.Logf("%d of 3 secret files read otherwise than the worker reads them", wrong)
}
