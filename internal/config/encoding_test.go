package config

import (
	"strings"
	"testing"
	"unicode/utf16"
)

// TestParseNamesTheLineThatIsNotUTF8: a tenants file saved as
// Windows-1252 or Latin-1 (a tag with an accent) was refused with the
// decoder's "invalid trailing UTF-8 octet" alone, with no place in the
// file to look at. The line is named, and what to do; the byte is not
// shown. A file in UTF-16 with its byte order mark, which the decoder
// reads, is taken as before.
func TestParseNamesTheLineThatIsNotUTF8(t *testing.T) {
	t.Parallel()
	file := "tenants:" + okTenant + "    guards:\n      protect:\n        machineTags: [\"Ne pas d\xe9sinscrire\"]\n"
	_, err := Parse([]byte(file))
	want := "tenants file: line 8: not UTF-8 (saved as Windows-1252 or Latin-1?): save the file as UTF-8"
	if err == nil || err.Error() != want {
		t.Errorf("Parse error = %v, want %q", err, want)
	}
	utf8File := strings.Replace(file, "\xe9", "é", 1)
	units := utf16.Encode([]rune(utf8File))
	b := []byte{0xff, 0xfe}
	for _, u := range units {
		b = append(b, byte(u), byte(u>>8))
	}
	f, err := Parse(b)
	if err != nil {
		t.Fatalf("UTF-16 file: %v", err)
	}
	if got := f.Tenants[0].Guards.Protect.MachineTags; len(got) != 1 || got[0] != "Ne pas désinscrire" {
		t.Errorf("UTF-16 file: machineTags %q", got)
	}
}
