package campaign

import (
	"strings"
	"testing"
)

// TestQuotedHeaderOfAnotherSeparatorSaysWhy: PowerShell's Export-Csv
// -UseCulture (or -Delimiter ';') quotes every cell, and in much of
// Europe separates them by ';'. Such a header is no CSV of ',' at all:
// its parse fails at the quote closed before a ';', and the error named
// only a stray quote, not the separator a user can change.
func TestQuotedHeaderOfAnotherSeparatorSaysWhy(t *testing.T) {
	t.Parallel()
	id := strings.Repeat("a", 40)
	for name, c := range map[string]struct{ body, want string }{
		"semicolon":         {`"machineId";"computerDnsName"` + "\r\n" + `"` + id + `";"pc-1"` + "\r\n", "is it separated by ';'? save it separated by ','"},
		"semicolon, BOM":    {"\ufeff" + `"machineId";"comment"` + "\n", "is it separated by ';'? save it separated by ','"},
		"semicolon, first":  {`"machineId";comment` + "\n", "is it separated by ';'? save it separated by ','"},
		"tab":               {`"machineId"` + "\t" + `"comment"` + "\n", "is it separated by tabs? save it separated by ','"},
		"PowerShell's type": {"#TYPE System.Management.Automation.PSCustomObject\r\n" + `"machineId";"comment"` + "\r\n", "is it separated by ';'?"},
	} {
		_, err := NewReader(strings.NewReader(c.body))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", name, err, c.want)
		}
	}
	// A stray quote in a header of ',' is told as it is.
	_, err := NewReader(strings.NewReader(`"machineId"x,comment` + "\n"))
	if err == nil || strings.Contains(err.Error(), "separated by") {
		t.Errorf("stray quote: %v, want the parse error alone", err)
	}
}
