package campaign

import "testing"

// TestNotFormulaAfterASeparator: a spreadsheet whose list separator is
// ';' (Excel in much of Europe) opens a plan's CSV split at each ';', and
// a line break in a quoted cell ends its line there: each part after one
// begins a cell too. A part that would be run as a formula begins with a
// quote, as a cell does; a plan's tags, joined by ';', are such parts.
func TestNotFormulaAfterASeparator(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, want string }{
		{"Lab;VIP", "Lab;VIP"},
		{"a-b;c+d", "a-b;c+d"},
		{`Lab;=HYPERLINK("http://example.invalid")`, `Lab;'=HYPERLINK("http://example.invalid")`},
		{"=1+1;+2;-3;@4", "'=1+1;'+2;'-3;'@4"},
		{"Lab;;=1", "Lab;;'=1"},
		{`Lab;"=1+1"`, `Lab;'"=1+1"`},
		{"pc-1\n=1+1", "pc-1\n'=1+1"},
		{"pc-1\r\n@SUM(1)", "pc-1\r\n'@SUM(1)"},
		{"Lab; =1", "Lab; =1"},
		{"Lab;", "Lab;"},
		{"", ""},
	} {
		if got := NotFormula(c.in); got != c.want {
			t.Errorf("NotFormula(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
