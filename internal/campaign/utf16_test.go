package campaign

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf16"
)

// utf16Text is s as UTF-16 without a byte order mark, little- or
// big-endian, as PowerShell's Out-File and Export-Csv write it once the
// mark is lost (a copy through a tool that drops it, a concatenation).
func utf16Text(s string, bigEndian bool) string {
	var b strings.Builder
	for _, u := range utf16.Encode([]rune(s)) {
		if bigEndian {
			b.WriteByte(byte(u >> 8))
			b.WriteByte(byte(u))
		} else {
			b.WriteByte(byte(u))
			b.WriteByte(byte(u >> 8))
		}
	}
	return b.String()
}

// TestUTF16WithoutAMarkWhateverItsHeaderStartsWith: a UTF-16 file
// without a byte order mark is told as UTF-16 whatever its header starts
// with. A header starting with non-ASCII characters, one of whose bytes
// is a line feed's or a carriage return's (设 and 名: UTF-16LE BE 8B,
// 0D 54), has that byte before any NUL byte; the line was taken to end
// there, before any NUL, and the file refused as having no device
// column, its cells shown as garbage. Its line breaks are UTF-16's: a
// NUL byte beside each.
func TestUTF16WithoutAMarkWhateverItsHeaderStartsWith(t *testing.T) {
	t.Parallel()
	id := strings.Repeat("a", 40)
	for _, header := range []string{"machineId,comment", "设备名,machineId", "名,computerDnsName", "ਊ,machineId", "ഊ,machineId", "乎名,machineId", "设备名," + strings.Repeat("注释,", 40) + "machineId"} {
		for _, eol := range []string{"\r\n", "\n", "\r"} {
			for _, be := range []bool{false, true} {
				body := utf16Text(header+eol+id+",x"+eol, be)
				_, err := NewReader(strings.NewReader(body))
				if !errors.Is(err, ErrNoDeviceColumn) || !strings.Contains(err.Error(), "the file is UTF-16: save it as UTF-8") {
					t.Errorf("%q with %q line ends, big-endian %v: %v, want it told as UTF-16", header, eol, be, err)
				}
			}
		}
	}
	// The same headers in UTF-8 are read, and their rows.
	for _, header := range []string{"设备名,machineId", "名,computerDnsName", "ਊ,machineId", "乎名,machineId"} {
		r, err := NewReader(strings.NewReader(header + "\r\n" + id + ",x\r\n"))
		if err != nil {
			t.Errorf("%q in UTF-8: %v, want the header read", header, err)
			continue
		}
		if _, err := r.Next(); err != nil {
			t.Errorf("%q in UTF-8, row 1: %v", header, err)
		}
	}
	// A NUL byte before a row's LF, as UTF-16BE's LF is, is that row's.
	r, err := NewReader(strings.NewReader("machineId,comment\n" + id + ",a\x00\n" + id + ",ok\n"))
	if err != nil {
		t.Fatalf("a NUL before a row's LF: %v, want the header read", err)
	}
	if _, err := r.Next(); err != nil {
		t.Errorf("a NUL before a row's LF, row 1: %v", err)
	}
}
