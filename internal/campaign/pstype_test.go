package campaign

import (
	"strings"
	"testing"
)

// Windows PowerShell 5's Export-Csv, without -NoTypeInformation, writes a
// first line #TYPE <type name> before the header, which its Import-Csv
// skips. So does the reader: the header is the line after it, and an
// invalid row's line counts it. The line was read as the header, and the
// file refused as one without a device column.
func TestReaderSkipsPowerShellsTypeLine(t *testing.T) {
	t.Parallel()
	id := strings.Repeat("a", 40)
	for name, body := range map[string]string{
		"Export-Csv":  "#TYPE System.Management.Automation.PSCustomObject\r\n\"machineId\",\"comment\"\r\n\"" + id + "\",\"retired\"\r\n\"not-an-id\",\"x\"\r\n",
		"after a BOM": "\ufeff#TYPE Selected.Microsoft.PowerShell.Commands.MachineRow\n\"machineId\",\"comment\"\n\"" + id + "\",\"retired\"\n\"not-an-id\",\"x\"\n",
		"lower case":  "#type Row\nmachineId,comment\n" + id + ",retired\nnot-an-id,x\n",
		"long name":   "#TYPE " + strings.Repeat("N", 5000) + "\nmachineId,comment\n" + id + ",retired\nnot-an-id,x\n",
	} {
		r, err := NewReader(strings.NewReader(body))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		row, err := r.Next()
		if err != nil || row.N != 1 || row.MachineID != id || row.Comment != "retired" {
			t.Errorf("%s: row %+v, %v", name, row, err)
		}
		if row, err = r.Next(); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if _, _, err := (Settings{Tenant: "contoso", Name: "wave"}).Request(row); err == nil || !strings.HasPrefix(err.Error(), "line 4: machineId") {
			t.Errorf("%s: row 2: %v, want an error on line 4", name, err)
		}
	}
	// A header cell that merely starts so is a header all the same.
	for _, body := range []string{"#TYPEmachineId\nx\n", "#TYPE\n"} {
		if _, err := NewReader(strings.NewReader(body)); err == nil || !strings.Contains(err.Error(), "header row") {
			t.Errorf("%q: %v, want the header refused", body, err)
		}
	}
}
