package main

import (
	"strings"
	"testing"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestDeadSeveralCodes: dead ls and dead retry with --code given more
// than once, or with codes separated by commas, take dead letters with
// any of them. Only the last --code was kept: the others' dead letters
// were left out, and nothing said so. An empty code among them is a
// usage error.
func TestDeadSeveralCodes(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	a := strings.Repeat("a", 40)
	publishDead(t, js, offboard.CodeAPIError, `{"requestId":"api-1","machineId":"`+a+`"}`)
	publishDead(t, js, offboard.CodeMachineNotFound, `{"requestId":"gone-1","machineId":"`+a+`"}`)
	publishDead(t, js, offboard.CodeCancelled, `{"requestId":"cxl-1","machineId":"`+a+`"}`)
	for _, codes := range [][]string{
		{"--code", offboard.CodeAPIError, "--code", offboard.CodeMachineNotFound},
		{"--code", offboard.CodeAPIError + "," + offboard.CodeMachineNotFound},
	} {
		code, out, errs := ctl(t, url, append([]string{"dead", "ls", "contoso"}, codes...)...)
		if code != exitOK || !strings.Contains(out, "api-1") || !strings.Contains(out, "gone-1") || strings.Contains(out, "cxl-1") {
			t.Errorf("dead ls %q: exit %d, stdout %q, stderr %q; want api-1 and gone-1 only", codes, code, out, errs)
		}
	}
	for _, args := range [][]string{
		{"dead", "ls", "contoso", "--code", offboard.CodeAPIError + ","},
		{"dead", "retry", "contoso", "--all", "--code", offboard.CodeAPIError, "--code", ""},
	} {
		if code, out, errs := ctl(t, url, args...); code != exitUsage || out != "" || strings.Count(strings.TrimSpace(errs), "\n") != 0 || !strings.Contains(errs, "--code") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want a usage error", args, code, out, errs)
		}
	}
	code, out, errs := ctl(t, url, "dead", "retry", "contoso", "--all", "--code", offboard.CodeAPIError, "--code", offboard.CodeMachineNotFound)
	if code != exitOK || !strings.Contains(out, "retried api-1") || !strings.Contains(out, "retried gone-1") || strings.Contains(out, "cxl-1") {
		t.Errorf("dead retry with two codes: exit %d, stdout %q, stderr %q; want api-1 and gone-1 retried", code, out, errs)
	}
}
