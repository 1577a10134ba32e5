package campaign

import (
	"encoding/csv"
	"errors"
	"io"
	"math"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/contoso-secops/mde-offboard/offboard"
)

func TestNames(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/tmp/Retire 2026.csv": "retire-2026", "q3.v2.csv": "q3.v2", "Été_1": "-t-_1",
		"wave..csv": "wave", ".wave.csv": "wave", "a...b.csv": "a.b", "..csv": "", "...": "",
	} {
		if got := NameFromFile(in); got != want {
			t.Errorf("NameFromFile(%q) = %q, want %q", in, got, want)
		}
	}
	for name, want := range map[string]bool{
		"wave": true, "q3.v2": true, "-": true, "a_b-c.d": true,
		"": false, ".": false, "..": false, "wave.": false, ".wave": false, "a..b": false, "Wave": false,
	} {
		if got := ValidName(name); got != want {
			t.Errorf("ValidName(%q) = %v, want %v", name, got, want)
		}
	}
	if id := RequestID("retire-2026", 42); id != "retire-2026-000042" {
		t.Errorf("RequestID = %q", id)
	}
	for id, want := range map[string]int{"wave-000001": 1, "wave-999999": 999999, "wave-00001": 0, "wave-0000001": 0, "wave-+00001": 0, "wave2-000001": 0} {
		if n, _ := RowOf("wave", id); n != want {
			t.Errorf("RowOf(wave, %q) = %d, want %d", id, n, want)
		}
	}
	bySource, byID := Names(offboard.Request{RequestID: "a-b-000003", Source: "campaign:other"})
	if bySource != "other" || byID != "a-b" {
		t.Errorf("Names = %q, %q", bySource, byID)
	}
	if s, i := Names(offboard.Request{RequestID: "chg-12345", Source: "servicenow:CHG1"}); s != "" || i != "" {
		t.Errorf("Names of a plain request = %q, %q", s, i)
	}
}

func TestETA(t *testing.T) {
	t.Parallel()
	for n, want := range map[int]time.Duration{0: 0, 1: 0, 100: 0, 101: time.Minute, 1500: 14 * time.Minute, 1501: time.Hour, 1601: time.Hour + time.Minute, 3000: time.Hour + 14*time.Minute, 3001: 2 * time.Hour} {
		if got := DrainTime(n, DefaultWindows); got != want {
			t.Errorf("DrainTime(%d) = %v, want %v", n, got, want)
		}
	}
	// A window so long that the product overflows is the longest ETA, not
	// one wrapped around to 0s or less.
	for n, ws := range map[int][]Window{3: {{1, 2562047 * time.Hour}}, 5: {{100, time.Minute}, {1, 1000000 * time.Hour}}} {
		if got := DrainTime(n, ws); got != math.MaxInt64 {
			t.Errorf("DrainTime(%d, %v) = %v, want the longest", n, ws, got)
		}
	}
	if got := (Estimate{Ahead: 100, Done: 50, Elapsed: 50 * time.Second}).ETA(); got != 100*time.Second {
		t.Errorf("observed ETA %v", got)
	}
	if _, err := ParseWindows("100/1m,1500/1h"); err != nil {
		t.Error(err)
	}
	for _, bad := range []string{"", "100", "0/1m", "x/1m", "100/0s"} {
		if _, err := ParseWindows(bad); err == nil {
			t.Errorf("ParseWindows(%q): no error", bad)
		}
	}
}

// TestRequestRefusesBytesThatAreNotUTF8: a row saved in another encoding
// is refused, not sent with its bytes replaced.
func TestRequestRefusesBytesThatAreNotUTF8(t *testing.T) {
	t.Parallel()
	s := Settings{Tenant: "contoso", Name: "wave1"}
	id := strings.Repeat("a", 40)
	if _, _, err := s.Request(Row{N: 1, MachineID: id, Comment: "café ✓"}); err != nil {
		t.Errorf("a UTF-8 row: %v", err)
	}
	for col, row := range map[string]Row{
		ColComment:         {N: 2, MachineID: id, Comment: "caf\xe9"},
		ColComputerDNSName: {N: 3, ComputerDNSName: "pc-\xe9.contoso.local"},
		ColRequestedBy:     {N: 4, MachineID: id, RequestedBy: "Ren\xe9"},
	} {
		if _, data, err := s.Request(row); err == nil || !strings.Contains(err.Error(), col+" is not UTF-8") {
			t.Errorf("%s in Latin-1: %v (body %q), want an error naming %s", col, err, data, col)
		}
	}
}

// TestRequestNamesTheFirstCellThatIsNotUTF8: a row with several cells in
// another encoding is refused for the first of them in the request's
// field order, as the worker's checks name the first problem, and the
// same one each time: a run again writes the same report.
func TestRequestNamesTheFirstCellThatIsNotUTF8(t *testing.T) {
	t.Parallel()
	s := Settings{Tenant: "contoso", Name: "wave1"}
	row := Row{N: 1, MachineID: strings.Repeat("a", 40), Comment: "caf\xe9", RequestedBy: "Ren\xe9", Source: "cmdb-\xe9"}
	seen := map[string]int{}
	for range 100 {
		_, _, err := s.Request(row)
		if err == nil {
			t.Fatal("a row in Latin-1 taken")
		}
		seen[err.Error()]++
	}
	if len(seen) != 1 || seen["comment is not UTF-8: save the CSV as UTF-8"] != 100 {
		t.Errorf("100 refusals of one row gave %d reasons: %v; want the comment named each time", len(seen), seen)
	}
}

// A byte order mark before the header is skipped, whether the header's
// cells are quoted (PowerShell's Export-Csv) or not (Excel); one after it
// is part of the cell.
func TestReaderSkipsAByteOrderMark(t *testing.T) {
	t.Parallel()
	for name, body := range map[string]string{
		"quoted": "\ufeff\"machineId\",\"computerDnsName\",\"comment\"\r\n\"m1\",,\"retired, ok\"\r\n",
		"plain":  "\ufeffmachineId,computerDnsName,comment\r\nm1,,\"retired, ok\"\r\n",
	} {
		r, err := NewReader(strings.NewReader(body))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		row, err := r.Next()
		if err != nil || row.MachineID != "m1" || row.Comment != "retired, ok" {
			t.Errorf("%s: row %+v, %v", name, row, err)
		}
	}
	if _, err := NewReader(strings.NewReader("machineId,\ufeffcomment\r\nm1,x\r\n")); err != nil {
		t.Errorf("a BOM inside the header: %v", err)
	}
}

// A lone carriage return ends a line, as LF and CRLF do: a CSV saved with
// CR line ends is read row by row, not as a header without rows, and a
// CR between two rows does not join them. A CRLF split across two reads
// is one line end, and a quoted cell keeps its CRLF as LF.
func TestReaderTakesALoneCRAsALineEnd(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]struct {
		body  string
		lines [2]int
	}{
		"cr":    {"machineId,computerDnsName,comment\rm1,,a\rm2,h2,\r", [2]int{2, 3}},
		"mixed": {"machineId,computerDnsName,comment\r\nm1,,a\rm2,h2,\n", [2]int{2, 3}},
		"crlf":  {"\ufeffmachineId,computerDnsName,comment\r\nm1,,a\r\n\r\nm2,h2,\r\n", [2]int{2, 4}},
	} {
		for _, slow := range []bool{false, true} {
			var in io.Reader = strings.NewReader(c.body)
			if slow {
				in = iotest.OneByteReader(in)
			}
			r, err := NewReader(in)
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			var got []Row
			for {
				row, err := r.Next()
				if err != nil {
					if !errors.Is(err, io.EOF) {
						t.Errorf("%s: %v", name, err)
					}
					break
				}
				got = append(got, row)
			}
			want := []Row{{N: 1, Line: c.lines[0], MachineID: "m1", Comment: "a"}, {N: 2, Line: c.lines[1], MachineID: "m2", ComputerDNSName: "h2"}}
			if !slices.Equal(got, want) {
				t.Errorf("%s (one byte a read: %v): rows %+v, want %+v", name, slow, got, want)
			}
		}
	}
	r, err := NewReader(iotest.OneByteReader(strings.NewReader("machineId,comment\r\nm1,\"a\r\nb\"\r\n")))
	if err != nil {
		t.Fatal(err)
	}
	if row, err := r.Next(); err != nil || row.Comment != "a\nb" {
		t.Errorf("quoted CRLF: %+v, %v", row, err)
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// TestReaderBoundsARecord: a quote left open makes encoding/csv read on
// to the closing quote or the end of the file, holding it all as one
// field; a line with no end, likewise. The read stops, with a reason,
// once a record passes MaxRecordSize, not at the end of the file. Rows
// with quoted fields, doubled quotes and quoted line ends of that size in
// all are read.
func TestReaderBoundsARecord(t *testing.T) {
	t.Parallel()
	row := strings.Repeat("a", 40) + `,"a ""quoted"" comment` + "\n" + `on two lines"` + "\n"
	good := "machineId,comment\n" + strings.Repeat(row, 2*MaxRecordSize/len(row))
	r, err := NewReader(strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for ; ; n++ {
		if _, err := r.Next(); err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("row %d: %v", n+1, err)
			}
			break
		}
	}
	if want := 2 * MaxRecordSize / len(row); n != want {
		t.Errorf("%d rows, want %d", n, want)
	}
	for name, body := range map[string]string{
		"quote left open": "machineId,comment\n" + strings.Repeat("a", 40) + `,"oops` + "\n" + strings.Repeat(strings.Repeat("a", 40)+",c\n", 64*MaxRecordSize/42),
		"no line end":     "machineId\n" + strings.Repeat("a", 64*MaxRecordSize),
	} {
		in := &countingReader{r: strings.NewReader(body)}
		r, err := NewReader(in)
		if err != nil {
			t.Fatal(err)
		}
		for err == nil {
			_, err = r.Next()
		}
		if errors.Is(err, io.EOF) || !strings.Contains(err.Error(), "longer than") || in.n > 2*MaxRecordSize {
			t.Errorf("%s: %v after %d of %d bytes; want an error once a record passes %d bytes", name, err, in.n, len(body), MaxRecordSize)
		}
	}
}

// A row waiting for a retry drops the earlier attempt's result, ignores
// a late copy of it, and takes the retry's.
func TestRowsRetrying(t *testing.T) {
	r, err := NewRows("wave", 2, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close() }()
	res := func(attempt int, outcome offboard.Outcome) *offboard.Result {
		return &offboard.Result{RequestID: RequestID("wave", 1), Outcome: outcome, Attempt: attempt}
	}
	if _, err := r.Result(1, res(1, offboard.OutcomeFailed)); err != nil {
		t.Fatal(err)
	}
	if r.Retrying(1, 1) || r.Retrying(3, 2) {
		t.Error("Retrying of the attempt held, or of a row beyond the CSV, changed a row")
	}
	if !r.Retrying(1, 2) || r.Has(1) || r.Counts().Waiting != 2 {
		t.Fatalf("after Retrying(1, 2): has %v, %+v", r.Has(1), r.Counts())
	}
	if _, err := r.Result(1, res(1, offboard.OutcomeFailed)); err != nil || r.Has(1) {
		t.Fatalf("the earlier attempt's result taken again: %v", err)
	}
	if _, err := r.Result(1, res(2, offboard.OutcomeCreated)); err != nil || r.Outcome(1) != offboard.OutcomeCreated {
		t.Fatalf("the retry's result: %s, %v", r.Outcome(1), err)
	}
}

// A retry of an attempt past 255 is told apart from the results before
// it: the row waits for it and takes its result, and keeps that result
// when it already holds it.
func TestRowsRetryingAHighAttempt(t *testing.T) {
	r, err := NewRows("wave", 2, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close() }()
	res := func(n, attempt int, outcome offboard.Outcome) *offboard.Result {
		return &offboard.Result{RequestID: RequestID("wave", n), Outcome: outcome, Attempt: attempt}
	}
	if _, err := r.Result(1, res(1, 1, offboard.OutcomeFailed)); err != nil {
		t.Fatal(err)
	}
	if !r.Retrying(1, 300) || r.Has(1) {
		t.Fatal("Retrying(1, 300) kept the first attempt's result")
	}
	if _, err := r.Result(1, res(1, 300, offboard.OutcomeCreated)); err != nil || r.Outcome(1) != offboard.OutcomeCreated {
		t.Fatalf("the retry's result not taken: %v, %q", err, r.Outcome(1))
	}
	if _, err := r.Result(2, res(2, 300, offboard.OutcomeCreated)); err != nil {
		t.Fatal(err)
	}
	if r.Retrying(2, 300) || r.Outcome(2) != offboard.OutcomeCreated {
		t.Fatalf("Retrying(2, 300) dropped the retry's own result: %q", r.Outcome(2))
	}
}

// TestRowWithMoreCellsThanTheHeader: a row with more cells than the
// header (a comma left out of quotes) has its columns shifted: the cell
// under a device column is another column's. Such a row is not a valid
// request, and its error names its line; a short row lacks only its
// optional columns.
func TestRowWithMoreCellsThanTheHeader(t *testing.T) {
	t.Parallel()
	s := Settings{Tenant: "contoso", Name: "wave1"}
	r, err := NewReader(strings.NewReader("comment,computerDnsName\n" +
		"Retired,pc-1.contoso.local\n" +
		"\n" +
		"Replaced,pc-9.contoso.local,pc-2.contoso.local\n" +
		"Retired,pc-3.contoso.local,\n" +
		",pc-4.contoso.local\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"", "line 4: more cells than the header (3, the header 2)", "line 5: more cells than the header (3, the header 2)", ""} {
		row, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		_, data, err := s.Request(row)
		switch {
		case want == "" && err != nil:
			t.Errorf("row %d: %v", row.N, err)
		case want != "" && (!errors.Is(err, ErrMoreCells) || !strings.Contains(err.Error(), want)):
			t.Errorf("row %d: error %v (body %s), want one with %q", row.N, err, data, want)
		}
	}
}

// TestHeaderWithoutADeviceColumnSaysWhy: a CSV saved with another
// separator (Excel in a locale whose list separator is ';', a TSV) or
// as UTF-16 (PowerShell's > and Out-File) has its device columns in
// the header's text all the same; the error says what the header was
// read as, and what to save it as.
func TestHeaderWithoutADeviceColumnSaysWhy(t *testing.T) {
	t.Parallel()
	utf16 := func(s string) string {
		var b strings.Builder
		for _, c := range s {
			b.WriteString(string([]byte{byte(c), 0}))
		}
		return b.String()
	}
	for name, c := range map[string]struct{ body, want string }{
		"semicolon":     {"machineId;computerDnsName\n" + strings.Repeat("a", 40) + ";pc-1\n", `"machineId;computerDnsName": is it separated by ';'? save it separated by ','`},
		"tab":           {"machineId\tcomment\n", `"machineId\tcomment": is it separated by tabs? save it separated by ','`},
		"utf-16le":      {"\xff\xfe" + utf16("machineId\r\n"), "UTF-16: save it as UTF-8"},
		"utf-16le bare": {utf16("machineId,comment\r\n"), "UTF-16: save it as UTF-8"},
		"utf-16be":      {"\xfe\xff\x00m\x00a\x00c", "UTF-16: save it as UTF-8"},
		// Export-Csv -Encoding Unicode quotes every cell.
		"utf-16le quoted":      {"\xff\xfe" + utf16(`"machineId","comment"`+"\r\n"), "UTF-16: save it as UTF-8"},
		"utf-16le quoted bare": {utf16(`"machineId","comment"` + "\r\n"), "UTF-16: save it as UTF-8"},
		"utf-16be quoted":      {"\xfe\xff\x00\"\x00m\x00a\x00c\x00\"", "UTF-16: save it as UTF-8"},
		"other":                {"host,owner\n", `column: its cells are "host", "owner"`},
	} {
		_, err := NewReader(strings.NewReader(c.body))
		if !errors.Is(err, ErrNoDeviceColumn) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %v saying %s", name, err, ErrNoDeviceColumn, c.want)
		}
	}
}

// TestInvalidRowNamesItsLine: a row's number counts records, not lines:
// blank lines are skipped and a quoted cell may hold line breaks. The
// error of an invalid row names the line it starts on, where an editor
// shows it.
func TestInvalidRowNamesItsLine(t *testing.T) {
	t.Parallel()
	s := Settings{Tenant: "contoso", Name: "wave1"}
	id := strings.Repeat("a", 40)
	r, err := NewReader(strings.NewReader("machineId,requestedBy\r\n" +
		id + ",\"alice\r\nand bob\"\r\n" + // a line break in a quoted cell: row 1, lines 2-3
		"\r\n\r\n" + // blank lines: no rows
		"not-a-device-id,carol\r\n" + // row 2, line 6
		id + ",dave\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"line 2: requestedBy", "line 6: machineId", ""} {
		row, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = s.Request(row)
		switch {
		case want == "" && err != nil:
			t.Errorf("row %d: %v", row.N, err)
		case want != "" && (err == nil || !strings.HasPrefix(err.Error(), want)):
			t.Errorf("row %d: error %v, want one starting %q", row.N, err, want)
		}
	}
}

// TestHumanRoundsBeforeItChoosesTheForm: a duration just short of a
// minute or an hour reads as that minute or hour, in its form. 59.6 s
// read 1m0s and 59m59.6s read 60m00s.
func TestHumanRoundsBeforeItChoosesTheForm(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		0:                                     "0s",
		400 * time.Millisecond:                "0s",
		59*time.Second + 400*time.Millisecond: "59s",
		59*time.Second + 600*time.Millisecond: "1m00s",
		59*time.Minute + 59*time.Second + 600*time.Millisecond: "1h00m",
		90 * time.Minute: "1h30m",
	} {
		if got := Human(d); got != want {
			t.Errorf("Human(%v) = %s, want %s", d, got, want)
		}
	}
}

// TestReportCellsAreNotFormulas: the report is opened in a spreadsheet
// like the plan, and its cells hold the CSV's own words and the API's: a
// cell that begins with =, +, -, @, a tab or a carriage return begins
// with a quote. A device id is never changed: a valid one begins with
// none of them, and an invalid one names no device either way.
func TestReportCellsAreNotFormulas(t *testing.T) {
	r, err := NewRows("wave", 3, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close() }()
	id := strings.Repeat("A", 40)
	csvText := "machineId,computerDnsName\n" +
		id + ",\"@SUM(1+1)\"\n" +
		"\"=HYPERLINK(\"\"http://example.invalid\"\")\",\n" +
		",\"-host\"\n"
	action := []byte(`{"id":"=act","status":"+Pending"}`)
	if _, err := r.Result(1, &offboard.Result{RequestID: RequestID("wave", 1), MachineID: strings.ToLower(id), Outcome: offboard.OutcomeCreated, Attempt: 1, MachineAction: action}); err != nil {
		t.Fatal(err)
	}
	if err := r.Invalid(2, offboard.Request{MachineID: `=HYPERLINK("http://example.invalid")`}, "-machineId is not 40 hex digits"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Result(3, &offboard.Result{RequestID: RequestID("wave", 3), MachineID: "@" + id, ComputerDNSName: "-host", Outcome: offboard.OutcomeFailed,
		Attempt: 1, Error: &offboard.ResultError{Code: "\tcode", Message: "\r=1+1"}}); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := r.WriteReport(&out, strings.NewReader(csvText)); err != nil {
		t.Fatal(err)
	}
	got, err := csv.NewReader(strings.NewReader(out.String())).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		ReportHeader,
		{"1", "wave-000001", id, "'@SUM(1+1)", "created", "", "", "'=act", "'+Pending"},
		{"2", "wave-000002", `'=HYPERLINK("http://example.invalid")`, "", "failed", "invalid_request", "'-machineId is not 40 hex digits", "", ""},
		{"3", "wave-000003", "'@" + id, "'-host", "failed", " code", " =1+1", "", ""},
	}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("report\n%q,\nwant\n%q", got, want)
	}
	// A campaign's name may begin with '-': so do its request ids.
	dash, err := NewRows("-wave", 1, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = dash.Close() }()
	out.Reset()
	if err := dash.WriteReport(&out, strings.NewReader("machineId\n"+id+"\n")); err != nil {
		t.Fatal(err)
	}
	if want := "'-wave-000001"; !strings.Contains(out.String(), "\n1,"+want+","+id+",") {
		t.Errorf("report of campaign -wave:\n%s\nwant its request id %s", out.String(), want)
	}
	// The state read back keeps the cells as they came: the quote is the
	// report's alone.
	if other, err := r.OtherDevice(Row{N: 3, ComputerDNSName: "-host"}); err != nil || other != "" {
		t.Errorf("OtherDevice of row 3: %q, %v", other, err)
	}
}

// TestReportKeepsLongNamesWhole: a report's device cells are the row's
// names, whatever their length (a DNS name has up to 255 characters); the
// message is cut to 200 characters, and a cell of garbage longer than any
// name to 1000. And two rows whose long names differ only past the 200th
// character are told apart.
func TestReportKeepsLongNamesWhole(t *testing.T) {
	t.Parallel()
	r, err := NewRows("wave", 3, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close() }()
	long := strings.Repeat(strings.Repeat("a", 63)+".", 3) + strings.Repeat("b", 60) // 252 characters
	other := long[:len(long)-1] + "c"
	id := strings.Repeat("1", 40)
	if _, err := r.Result(1, &offboard.Result{RequestID: RequestID("wave", 1), MachineID: id, ComputerDNSName: long,
		Outcome: offboard.OutcomeFailed, Attempt: 1, Error: &offboard.ResultError{Code: offboard.CodeAPIError, Message: strings.Repeat("m", 300)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Result(2, &offboard.Result{RequestID: RequestID("wave", 2), MachineID: id, ComputerDNSName: long, Outcome: offboard.OutcomeCreated, Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	garbage := strings.Repeat("x", 5000)
	if err := r.Invalid(3, offboard.Request{}, "machineId is not 40 hexadecimal characters"); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := r.WriteReport(&out, strings.NewReader("machineId,computerDnsName\n,"+long+"\n"+id+",\n"+garbage+",\n")); err != nil {
		t.Fatal(err)
	}
	got, err := csv.NewReader(strings.NewReader(out.String())).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Fatalf("report of %d lines, want 4:\n%s", len(got), out.String())
	}
	if n := len([]rune(got[3][2])); n != reportCellLength {
		t.Errorf("a garbage machineId of 5000 characters reported with %d, want %d", n, reportCellLength)
	}
	// Row 1 names the device, row 2 shows the name its id has.
	for i, line := range got[1:3] {
		if line[3] != long {
			t.Errorf("row %d: computerDnsName %d characters (%q), want the row's %d", i+1, len([]rune(line[3])), line[3], len(long))
		}
	}
	if msg := []rune(got[1][6]); len(msg) != reportMessageLength {
		t.Errorf("message of %d characters, want it cut to %d", len(msg), reportMessageLength)
	}
	if dev, err := r.OtherDevice(Row{N: 1, ComputerDNSName: other}); err != nil || dev != long {
		t.Errorf("OtherDevice of a row naming %q: %q, %v; want the result's device", other, dev, err)
	}
}

// TestNULInARowIsTheRowsAlone: a NUL byte in a row of a UTF-8 CSV makes
// that row invalid, wherever the row is; the file is not taken for UTF-16,
// which only a NUL in its first line (or a UTF-16 byte order mark) says.
// A UTF-16 file whose first line is blank is still told as one.
func TestNULInARowIsTheRowsAlone(t *testing.T) {
	t.Parallel()
	id := strings.Repeat("a", 40)
	s := Settings{Tenant: "contoso", Name: "wave"}
	for name, body := range map[string]string{
		"first row": "machineId,comment\n" + id + ",a\x00b\n" + id + ",ok\n",
		"CR ends":   "machineId,comment\r" + id + ",a\x00b\r" + id + ",ok\r",
		"later row": "machineId,comment\n" + id + ",ok\n" + id + ",ok\n" + id + ",a\x00b\n" + id + ",ok\n",
	} {
		r, err := NewReader(strings.NewReader(body))
		if err != nil {
			t.Errorf("%s: %v, want the header read", name, err)
			continue
		}
		var invalid []int
		for {
			row, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if _, _, err := s.Request(row); err != nil {
				invalid = append(invalid, row.N)
			}
		}
		if len(invalid) != 1 {
			t.Errorf("%s: invalid rows %v, want the row with the NUL alone", name, invalid)
		}
	}
	blankFirst := "\n\x00" + "m\x00a\x00c\x00h\x00i\x00n\x00e\x00I\x00d\x00\n\x00"
	if _, err := NewReader(strings.NewReader(blankFirst)); !errors.Is(err, ErrNoDeviceColumn) || !strings.Contains(err.Error(), "UTF-16") {
		t.Errorf("UTF-16 after a blank first line: %v, want it told as UTF-16", err)
	}
}

// A row whose result is created, already_pending or dry_run is final: the
// worker answers any retry of its request id with that stored result, of
// its stored attempt, under that attempt's message id (the results stream
// drops it). Retrying leaves such a row as it is, and a row waiting past
// an attempt takes a final result of that attempt or an earlier one,
// which is all a later attempt will be answered with.
func TestRowsRetryingAFinalResult(t *testing.T) {
	for _, o := range []offboard.Outcome{offboard.OutcomeCreated, offboard.OutcomeAlreadyPending, offboard.OutcomeDryRun} {
		t.Run(string(o), func(t *testing.T) { rowsRetryingAFinalResult(t, o) })
	}
}

func rowsRetryingAFinalResult(t *testing.T, o offboard.Outcome) {
	r, err := NewRows("wave", 2, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.Close() }()
	res := func(n, attempt int, outcome offboard.Outcome) *offboard.Result {
		return &offboard.Result{RequestID: RequestID("wave", n), Outcome: outcome, Attempt: attempt}
	}
	if _, err := r.Result(1, res(1, 1, o)); err != nil {
		t.Fatal(err)
	}
	if r.Retrying(1, 2) || r.Outcome(1) != o || r.Counts().Waiting != 1 {
		t.Errorf("%s: Retrying(1, 2) made the row wait: outcome %q, %+v", o, r.Outcome(1), r.Counts())
	}
	// Row 2: the first attempt and a retry both wait (a retry
	// published by hand); the first attempt's result is final.
	r.Retrying(2, 2)
	if _, err := r.Result(2, res(2, 1, o)); err != nil {
		t.Fatal(err)
	}
	if r.Outcome(2) != o || r.Counts().Waiting != 0 {
		t.Errorf("%s: the first attempt's %s result left row 2 waiting: outcome %q, %+v", o, o, r.Outcome(2), r.Counts())
	}
	// A failed result of an attempt before the retry's is still
	// not taken.
	if _, err := r.Result(2, res(2, 1, offboard.OutcomeFailed)); err != nil || r.Outcome(2) != o {
		t.Errorf("%s: a late failed result replaced row 2's: %q, %v", o, r.Outcome(2), err)
	}
}
