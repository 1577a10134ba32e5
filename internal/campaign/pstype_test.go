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
		// Saved again as Excel for Mac's "CSV (Macintosh)": CR line ends.
		"CR ends":        "#TYPE System.Management.Automation.PSCustomObject\rmachineId,comment\r" + id + ",retired\rnot-an-id,x\r",
		"CR ends quoted": "#TYPE Row\r\"machineId\",\"comment\"\r\"" + id + "\",\"retired\"\r\"not-an-id\",\"x\"\r",
	} {
		readsRowsAfterTheFirstLine(t, name, body, id, "retired")
	}
	// A header cell that merely starts so is a header all the same.
	for _, body := range []string{"#TYPEmachineId\nx\n", "#TYPE\n"} {
		if _, err := NewReader(strings.NewReader(body)); err == nil || !strings.Contains(err.Error(), "header row") {
			t.Errorf("%q: %v, want the header refused", body, err)
		}
	}
}
