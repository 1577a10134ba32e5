package main

import (
	"io"
	"strings"
	"testing"
)

// A --listen port that is no port number is bad usage, refused before
// anything starts, as the worker refuses its own: ":99999" and ":-1"
// passed the check and failed the listen, exit 1, as if the port were
// taken.
func TestListenPortOutOfRangeIsBadUsage(t *testing.T) {
	for _, listen := range []string{"127.0.0.1:99999", ":-1", ":65536", "127.0.0.1:http"} {
		_, err := parseFlags([]string{"--listen", listen}, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "--listen") {
			t.Errorf("--listen %s: error %v, want one naming --listen", listen, err)
		}
	}
	for _, listen := range []string{"127.0.0.1:0", ":8443", "[::1]:65535", "localhost:18443"} {
		if _, err := parseFlags([]string{"--listen", listen}, io.Discard); err != nil {
			t.Errorf("--listen %s: %v, want it taken", listen, err)
		}
	}
}
