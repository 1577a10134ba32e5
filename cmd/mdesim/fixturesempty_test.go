package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEmptyFixturesFileSaysSo: an empty --fixtures file (or one of white
// space) is refused in one line that says it is empty and what it holds,
// naming the flag, not the path (TestUsageErrorsShowNoSecret).
// Before, "--fixtures: fixtures: EOF".
func TestEmptyFixturesFileSaysSo(t *testing.T) {
	t.Parallel()
	for _, body := range []string{"", "\n  \n"} {
		path := filepath.Join(t.TempDir(), "fixtures.yaml")
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := parseFlags([]string{"--fixtures", path}, io.Discard)
		if err == nil || !strings.HasPrefix(err.Error(), "--fixtures: the file it names is empty: give tenants") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: error %v", body, err)
		}
	}
}
