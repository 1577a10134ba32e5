package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestSkipFileChecksAloneNamesTheVariables: --skip-file-checks without
// --check-config is refused, and the variables that set no flag or set
// one under an old name are named beside the error, as beside every
// other refusal at the start: MDE_OFFBOARD_SKIP_FILE_CHECKS set for a
// check whose MDE_OFFBOARD_CHECK_CONFIG was misspelt started nothing,
// and the error said the check was not asked for without the warning
// that told why.
func TestSkipFileChecksAloneNamesTheVariables(t *testing.T) {
	t.Setenv("MDE_OFFBOARD_SKIP_FILE_CHECKS", "true")
	t.Setenv("MDE_OFFBOARD_CHECK_CONFG", "true")
	t.Setenv("LOG_LEVEL", "debug")
	var stdout, stderr bytes.Buffer
	code := run([]string{"--config", "../../deploy/worker.yaml"}, &stdout, &stderr)
	msg := stderr.String()
	for _, want := range []string{"only with --check-config", "MDE_OFFBOARD_CHECK_CONFG sets no flag", "LOG_LEVEL without the MDE_OFFBOARD_ prefix"} {
		if !strings.Contains(msg, want) {
			t.Errorf("stderr %q lacks %q", msg, want)
		}
	}
	if code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
}
