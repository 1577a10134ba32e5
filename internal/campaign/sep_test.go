package campaign

import (
	"encoding/csv"
	"errors"
	"strings"
	"testing"
)

// A first line sep=X, which Excel writes (and reads) to name the file's
// separator, is skipped and its separator honoured, as Excel does: the
// header is the line after it, and an invalid row's line counts it. It
// was read as the header, and refused as one without a device column,
// its cells "sep=" and "".
func TestReaderTakesExcelsSeparatorLine(t *testing.T) {
	t.Parallel()
	id := strings.Repeat("a", 40)
	for name, body := range map[string]string{
		"comma":          "sep=,\r\nmachineId,comment\r\n" + id + ",\"retired, ok\"\r\nnot-an-id,x\r\n",
		"semicolon":      "sep=;\nmachineId;comment\n" + id + ";retired, ok\nnot-an-id;x\n",
		"tab":            "sep=\t\nmachineId\tcomment\n" + id + "\tretired, ok\nnot-an-id\tx\n",
		"after a BOM":    "\ufeffsep=;\r\nmachineId;comment\r\n" + id + ";retired, ok\r\nnot-an-id;x\r\n",
		"upper case, CR": "SEP=;\rmachineId;comment\r" + id + ";retired, ok\rnot-an-id;x\r",
		"quoted":         "\"sep=;\"\nmachineId;comment\n" + id + ";retired, ok\nnot-an-id;x\n",
	} {
		readsRowsAfterTheFirstLine(t, name, body, id, "retired, ok")
	}
	// A separator that cannot be one is no separator line: the header
	// says what it holds.
	for _, first := range []string{"sep=", "sep=ab", "sep=\""} {
		if _, err := NewReader(strings.NewReader(first + "\nmachineId\n")); err == nil || !strings.Contains(err.Error(), "header row") {
			t.Errorf("%q: %v, want the header refused", first, err)
		}
	}
}

// readsRowsAfterTheFirstLine checks a CSV whose first line is not its
// header: its row 1 is device id with comment, and its row 2, an
// invalid one, is named by its line in the file, 4.
func readsRowsAfterTheFirstLine(t *testing.T, name, body, id, comment string) {
	t.Helper()
	r, err := NewReader(strings.NewReader(body))
	if err != nil {
		t.Errorf("%s: %v", name, err)
		return
	}
	row, err := r.Next()
	if err != nil || row.N != 1 || row.MachineID != id || row.Comment != comment {
		t.Errorf("%s: row %+v, %v", name, row, err)
	}
	if row, err = r.Next(); err != nil {
		t.Errorf("%s: %v", name, err)
		return
	}
	if _, _, err := (Settings{Tenant: "contoso", Name: "wave"}).Request(row); err == nil || !strings.HasPrefix(err.Error(), "line 4: machineId") {
		t.Errorf("%s: row 2: %v, want an error on line 4", name, err)
	}
}

// A row the CSV reader cannot read (a bare quote, a quote left open) is
// named by its line in the file, Excel's separator line counted, as an
// invalid row's is: the reader's own line numbers started after it.
func TestReaderCountsExcelsSeparatorLineInParseErrors(t *testing.T) {
	t.Parallel()
	for name, body := range map[string]string{
		"bare quote":       "sep=;\nmachineId;comment\nabc;x\"y\n",
		"quote left open":  "sep=;\r\nmachineId;comment\r\nabc;\"x\r\n",
		"bare quote in CR": "sep=;\rmachineId;comment\rabc;x\"y\r",
	} {
		r, err := NewReader(strings.NewReader(body))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		var pe *csv.ParseError
		if _, err := r.Next(); !errors.As(err, &pe) || pe.Line != 3 || !strings.Contains(err.Error(), "line 3") {
			t.Errorf("%s: %v, want a parse error on line 3", name, err)
		}
	}
	// The header's too.
	var pe *csv.ParseError
	if _, err := NewReader(strings.NewReader("sep=;\nmachineId;co\"mment\n")); !errors.As(err, &pe) || pe.Line != 2 {
		t.Errorf("header: %v, want a parse error on line 2", err)
	}
}
