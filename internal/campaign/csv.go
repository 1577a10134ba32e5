package campaign

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// Row is one CSV row of a campaign: the device and the optional columns.
type Row struct {
	N               int // 1-based, the header not counted
	Line            int // the line of the file the row starts on, 1-based; 0: not known
	MachineID       string
	ComputerDNSName string
	Comment         string
	RequestedBy     string
	Source          string
	// LastSeen is the row's lastSeen cell: in a plan's CSV, the device's
	// lastSeen when the plan was made, which its request carries as
	// notSeenSince.
	LastSeen string
	// shifted is why the row's cells cannot be taken under the header's
	// columns (more cells than the header); nil when they can.
	shifted error
}

// Reader reads a campaign's CSV one row at a time.
type Reader struct {
	r     *csv.Reader
	cols  map[string]int
	width int // the header's cells
	n     int
	lines int // lines before the CSV reader's first: Excel's separator line
}

// Columns a campaign's CSV may have; others are ignored.
const (
	ColMachineID       = "machineId"
	ColComputerDNSName = "computerDnsName"
	ColComment         = "comment"
	ColRequestedBy     = "requestedBy"
	ColSource          = "source"
	// ColLastSeen is the plan's lastSeen column: a row's request is
	// offboarded only if Defender has not seen the device since
	// (offboard.Request.NotSeenSince), unless Settings.IgnoreLastSeen.
	ColLastSeen = "lastSeen"
)

const utf8BOM = "\ufeff"

// UTF-16's byte order marks, little- and big-endian.
const utf16LE, utf16BE = "\xff\xfe", "\xfe\xff"

// ErrNoDeviceColumn means the header names neither device column.
var ErrNoDeviceColumn = errors.New("the header row has neither a machineId nor a computerDnsName column")

// ErrDryRunColumn means the header has a column named dryRun, in any case
// or naming style. Ignored as another column, it would make the rows it
// marks real offboards in a run without --dry-run.
var ErrDryRunColumn = errors.New("the header row has a dryRun column")

// ErrMoreCells means a row has more cells than the header: a comma
// outside quotes split one cell, and each cell after it stands under the
// next column's name, a device column included.
var ErrMoreCells = errors.New("more cells than the header")

// NewReader reads the header row. A byte order mark before it (Excel's
// and PowerShell's "UTF-8") is skipped, quoted header cells included, and
// so is a line sep=X, whose separator X is then the file's, as Excel
// takes it, or PowerShell's line #TYPE <name>, as Import-Csv takes it. A
// carriage return that is not followed by a line feed ends a line.
func NewReader(r io.Reader) (*Reader, error) {
	br := bufio.NewReader(r)
	if bom, err := br.Peek(len(utf8BOM)); err == nil && string(bom) == utf8BOM {
		_, _ = br.Discard(len(utf8BOM))
	}
	if isUTF16(br) {
		// Its quotes, each beside a NUL byte, fail the header's parse.
		return nil, errUTF16
	}
	lines := powerShellType(br)
	comma, sep := excelSeparator(br)
	lines += sep
	head, _ := br.Peek(br.Size())
	cr := csv.NewReader(&recordLimit{r: crLines{br}})
	cr.Comma = comma
	cr.FieldsPerRecord = -1 // a short row lacks its optional columns
	cr.ReuseRecord = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("the CSV is empty: it needs a header row")
	}
	if err != nil {
		return nil, fmt.Errorf("header row: %w%s", inFile(err, lines), otherSeparator(err, comma, head))
	}
	cols := map[string]int{}
	for i, h := range header {
		h = strings.TrimSpace(h)
		if offboard.FieldNamed(h) == "dryRun" {
			return nil, fmt.Errorf("%w (%s): a campaign is a dry run with --dry-run, every row of it, and a real run without it; remove the column",
				ErrDryRunColumn, offboard.Quote(h))
		}
		if premiseNamedOtherwise(h) {
			return nil, fmt.Errorf("header row: column %s is not read: a row's premise (Defender has not seen the device since) is its lastSeen column, as campaign plan writes it; name the column lastSeen, or remove it",
				offboard.Quote(h))
		}
		for _, c := range []string{ColMachineID, ColComputerDNSName, ColComment, ColRequestedBy, ColSource, ColLastSeen} {
			if strings.EqualFold(h, c) {
				if _, dup := cols[c]; dup {
					return nil, fmt.Errorf("header row: column %s appears twice", c)
				}
				cols[c] = i
			}
		}
	}
	_, byID := cols[ColMachineID]
	_, byName := cols[ColComputerDNSName]
	if !byID && !byName {
		return nil, noDeviceColumn(header)
	}
	return &Reader{r: cr, cols: cols, width: len(header), lines: lines}, nil
}

// premiseNamedOtherwise says whether a header cell names a row's
// premise otherwise than ColLastSeen: the request's notSeenSince, or
// lastSeen in another naming style (last_seen, Last Seen). Ignored as
// another column, it would leave every row without its premise, and a
// device seen again would be offboarded.
func premiseNamedOtherwise(h string) bool {
	if strings.EqualFold(h, ColLastSeen) {
		return false
	}
	letters := strings.Map(func(r rune) rune {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			return r
		}
		return -1
	}, h)
	return offboard.FieldNamed(h) == "notSeenSince" || strings.EqualFold(letters, ColLastSeen)
}

// errUTF16 refuses a CSV in UTF-16 (PowerShell's > and Out-File, and
// Export-Csv -Encoding Unicode): its device columns are there all the
// same.
var errUTF16 = fmt.Errorf("%w: the file is UTF-16: save it as UTF-8", ErrNoDeviceColumn)

// isUTF16 says whether the file starts with a UTF-16 byte order mark, or
// has a NUL byte in its first line's bytes, which no text in UTF-8 has
// (the line breaks and NUL bytes before it aside: a UTF-16 file's blank
// first line). A NUL byte in a later line is that row's: the row is
// invalid, the file is not UTF-16. The first line's end is a CR or LF
// byte, or, in UTF-16, a CR or LF character: a byte of a character such
// as 名 (UTF-16LE 0D 54) may be a CR's or an LF's, before any NUL byte.
func isUTF16(br *bufio.Reader) bool {
	head, _ := br.Peek(br.Size())
	s := string(head)
	if strings.HasPrefix(s, utf16LE) || strings.HasPrefix(s, utf16BE) {
		return true
	}
	line := strings.TrimLeft(s, "\r\n\x00")
	if end := strings.IndexAny(line, "\r\n"); end >= 0 {
		line = line[:end]
	}
	return strings.Contains(line, "\x00") || utf16FirstLine(head, 1) || utf16FirstLine(head, 0)
}

// utf16FirstLine says whether head, read as UTF-16 whose characters have
// their high byte at offset high (1 little-endian, 0 big-endian), has a
// first line that holds a character of one byte, NUL its high byte (the
// header's column names are ASCII), and ends in head with a CR or LF
// character; the blank lines before it aside. The line must end there:
// the lines of a UTF-8 file, read so, may run on to a NUL byte in a row.
func utf16FirstLine(head []byte, high int) bool {
	low := 1 - high
	i := 0
	for ; i+1 < len(head) && head[i+high] == 0; i += 2 {
		if c := head[i+low]; c != '\r' && c != '\n' && c != 0 {
			break
		}
	}
	oneByte := false
	for ; i+1 < len(head); i += 2 {
		if head[i+high] != 0 {
			continue
		}
		if c := head[i+low]; c == '\r' || c == '\n' {
			return oneByte
		}
		oneByte = true
	}
	return false
}

// powerShellType reads the line #TYPE <type name> that Windows PowerShell
// 5's Export-Csv writes before the header (unless -NoTypeInformation),
// when the file starts with one: 1, the line read. Else 0, nothing read.
// The line ends at LF, CRLF or a lone CR, as the lines after it do
// (crLines): a file saved again with CR line ends has no LF at all.
func powerShellType(br *bufio.Reader) int {
	const prefix = "#type "
	head, _ := br.Peek(len(prefix))
	if !strings.EqualFold(string(head), prefix) {
		return 0
	}
	for {
		c, err := br.ReadByte()
		switch {
		case err != nil, c == '\n':
			return 1
		case c == '\r':
			if next, err := br.Peek(1); err == nil && next[0] == '\n' {
				_, _ = br.Discard(1)
			}
			return 1
		}
	}
}

// excelSeparator reads Excel's first line sep=X (or "sep=X"), which names
// the file's separator, when the file starts with one: X, and the one
// line read. Else ',' and nothing read. A separator that cannot be one
// (a quote, a line end) leaves the line to be read as the header.
func excelSeparator(br *bufio.Reader) (rune, int) {
	head, _ := br.Peek(16)
	s := string(head)
	quoted := strings.HasPrefix(s, `"`)
	if quoted {
		s = s[1:]
	}
	if len(s) < 4 || !strings.EqualFold(s[:4], "sep=") {
		return ',', 0
	}
	c, size := utf8.DecodeRuneInString(s[4:])
	rest := s[4+size:]
	if quoted {
		if !strings.HasPrefix(rest, `"`) {
			return ',', 0
		}
		rest = rest[1:]
	}
	if c == utf8.RuneError || c == 0 || c == '"' || c == '\r' || c == '\n' {
		return ',', 0
	}
	var end int
	switch {
	case strings.HasPrefix(rest, "\r\n"):
		end = 2
	case strings.HasPrefix(rest, "\n"), strings.HasPrefix(rest, "\r"):
		end = 1
	case rest == "" && len(head) < 16:
		// The file's end.
	default:
		return ',', 0
	}
	_, _ = br.Discard(len(head) - len(rest) + end)
	return c, 1
}

// inFile numbers the lines of the CSV reader's parse error as the file's:
// the reader did not see the lines before its first (Excel's separator
// line).
func inFile(err error, lines int) error {
	var pe *csv.ParseError
	if lines > 0 && errors.As(err, &pe) {
		pe.StartLine += lines
		pe.Line += lines
	}
	return err
}

// noDeviceColumn is ErrNoDeviceColumn with the header's cells as read,
// and what the file likely is when its device columns are there all the
// same: UTF-16 (NUL bytes; isUTF16 looks at the first ones), or another
// separator than ',' (the header read as one cell).
func noDeviceColumn(header []string) error {
	if strings.Contains(strings.Join(header, ","), "\x00") {
		return errUTF16
	}
	const most = 8
	cells := make([]string, 0, most)
	for i, h := range header {
		if i == most {
			cells = append(cells, "...")
			break
		}
		if rs := []rune(h); len(rs) > 60 {
			h = string(rs[:60]) + "..."
		}
		cells = append(cells, strconv.Quote(h))
	}
	hint := ""
	switch {
	case len(header) != 1:
	case strings.Contains(header[0], ";"):
		hint = ": is it separated by ';'? save it separated by ','"
	case strings.Contains(header[0], "\t"):
		hint = ": is it separated by tabs? save it separated by ','"
	}
	return fmt.Errorf("%w: its cells are %s%s", ErrNoDeviceColumn, strings.Join(cells, ", "), hint)
}

// otherSeparator says what a header that fails its parse at a quote
// closed before a ';' or a tab likely is: a file of quoted cells
// separated by it, as PowerShell's Export-Csv -UseCulture writes in much
// of Europe. Read with ',', such a header is no CSV at all, and the parse
// error names only a stray quote. head is the file from its header on.
func otherSeparator(err error, comma rune, head []byte) string {
	if comma != ',' || !errors.Is(err, csv.ErrQuote) {
		return ""
	}
	line := string(head)
	if end := strings.IndexAny(line, "\r\n"); end >= 0 {
		line = line[:end]
	}
	switch {
	case strings.Contains(line, `";`):
		return ": is it separated by ';'? save it separated by ','"
	case strings.Contains(line, "\"\t"):
		return ": is it separated by tabs? save it separated by ','"
	}
	return ""
}

// crLines turns a carriage return that does not start a CRLF into a line
// feed. encoding/csv ends lines at LF only and keeps a lone CR in its
// cell: a CSV with the CR line ends of Excel for Mac's "CSV (Macintosh)"
// read as its header alone, with no row, and a lone CR within a file
// joined two rows into one, the second row's device left out unreported.
type crLines struct{ r *bufio.Reader }

func (c crLines) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	for i := range p[:n] {
		if p[i] != '\r' {
			continue
		}
		if i+1 < n {
			if p[i+1] != '\n' {
				p[i] = '\n'
			}
		} else if next, perr := c.r.Peek(1); perr != nil || next[0] != '\n' {
			p[i] = '\n'
		}
	}
	return n, err
}

// MaxCSVSize is the largest campaign CSV, in bytes: the run copies it
// before reading it. A million rows of the plan's columns take some
// 120 MiB.
const MaxCSVSize = 256 << 20

// MaxRecordSize is the most bytes a CSV record may take: a row, or the
// rows a quote left open joins into one field, which encoding/csv holds
// in memory whole up to its closing quote or the end of the file. A row
// of the plan's columns with a thousand tags takes some 50 KiB.
const MaxRecordSize = 1 << 20

// errRecordTooLong ends a read at a record longer than MaxRecordSize.
var errRecordTooLong = fmt.Errorf("longer than %d MiB: is a quote left open?", MaxRecordSize>>20)

// recordLimit fails a read once a record passes MaxRecordSize bytes. A
// record ends at a line feed outside quotes; a doubled quote within a
// quoted field toggles the quoting twice.
type recordLimit struct {
	r      io.Reader
	quoted bool
	n      int // bytes of the record so far
}

func (l *recordLimit) Read(p []byte) (int, error) {
	if l.n > MaxRecordSize {
		return 0, errRecordTooLong
	}
	n, err := l.r.Read(p)
	for i, c := range p[:n] {
		switch {
		case c == '"':
			l.quoted = !l.quoted
		case c == '\n' && !l.quoted:
			l.n = 0
			continue
		}
		if l.n++; l.n > MaxRecordSize {
			return i, errRecordTooLong
		}
	}
	return n, err
}

// Next returns the next row, or io.EOF after the last. A row with more
// cells than the header is returned too: Settings.Request refuses it.
func (r *Reader) Next() (Row, error) {
	rec, err := r.r.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return Row{}, io.EOF
		}
		return Row{}, fmt.Errorf("row %d: %w", r.n+1, inFile(err, r.lines))
	}
	r.n++
	line, _ := r.r.FieldPos(0)
	if line > 0 {
		line += r.lines
	}
	var shifted error
	if len(rec) > r.width {
		shifted = fmt.Errorf("%w (%d, the header %d): a comma outside quotes puts each cell after it under the next column: quote the cell, or name the extra column in the header",
			ErrMoreCells, len(rec), r.width)
	}
	get := func(col string) string {
		if i, ok := r.cols[col]; ok && i < len(rec) {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	return Row{
		N: r.n, Line: line, MachineID: get(ColMachineID), ComputerDNSName: get(ColComputerDNSName),
		Comment: get(ColComment), RequestedBy: get(ColRequestedBy), Source: get(ColSource),
		LastSeen: get(ColLastSeen), shifted: shifted,
	}, nil
}

// spreadsheetTime is the form a spreadsheet writes back an RFC 3339 time
// it took for a date: a space for the T, no zone, its fractions kept or
// cut.
var spreadsheetTime = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}[ Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?$`)

// ParseLastSeen reads a row's lastSeen cell as its request's
// notSeenSince: an RFC 3339 time (offboard.ParseNotSeenSince), or the
// same written back by a spreadsheet (2026-06-10 15:52:54), which is the
// plan's UTC time without its Z: a spreadsheet shifts no zone. A form
// without seconds, or with the day and month in a locale's order
// (6/10/2026 15:52), is refused: what it stands for cannot be told.
func ParseLastSeen(cell string) (time.Time, error) {
	if spreadsheetTime.MatchString(cell) {
		v := cell[:10] + "T" + cell[11:] + "Z"
		t, err := offboard.ParseNotSeenSince(ColLastSeen, v)
		if err != nil {
			// Named as the cell is written, not as read.
			return t, errors.New(strings.Replace(err.Error(), offboard.Quote(v), offboard.Quote(cell), 1))
		}
		return t, nil
	}
	return offboard.ParseNotSeenSince(ColLastSeen, cell)
}

// HeaderAgain says whether a row repeats the header row of a plan's CSV
// (two plans' files joined): its lastSeen cell is the column's name.
func (row Row) HeaderAgain() bool {
	return strings.EqualFold(strings.TrimSpace(row.LastSeen), ColLastSeen)
}

// Settings are the campaign's choices that every row's request carries.
type Settings struct {
	Tenant  string
	Name    string
	Comment string // for rows without their own
	DryRun  bool
	// IgnoreLastSeen leaves the rows' lastSeen out of their requests:
	// each device is offboarded whenever Defender saw it last.
	IgnoreLastSeen bool
}

// CheckComment refuses a comment for rows without their own that the
// worker would refuse in every such row: too long, or holding control
// characters.
func (s Settings) CheckComment() error {
	if !utf8.ValidString(s.Comment) {
		return errors.New("comment is not UTF-8")
	}
	// A row of a valid device: only the comment can make it invalid.
	_, _, err := s.Request(Row{N: 1, MachineID: strings.Repeat("0", 40)})
	return err
}

// Request is the row's request and its body, checked as the worker will
// check it. On error the request holds the fields that passed their check,
// and the error names the row's line (when known): a row's number counts
// records, which blank lines and line breaks in quoted cells set apart
// from the lines.
func (s Settings) Request(row Row) (offboard.Request, []byte, error) {
	req, data, err := s.request(row)
	if err != nil && row.Line > 0 {
		err = fmt.Errorf("line %d: %w", row.Line, err)
	}
	return req, data, err
}

// request is Request without the line. A row with more cells than the
// header is refused: its cells are not the columns they stand under, and
// the device one names is not the row's.
func (s Settings) request(row Row) (offboard.Request, []byte, error) {
	if row.shifted != nil {
		return offboard.Request{RequestID: RequestID(s.Name, row.N)}, nil, row.shifted
	}
	r := offboard.Request{
		RequestID: RequestID(s.Name, row.N), MachineID: row.MachineID, Comment: row.Comment,
		RequestedBy: row.RequestedBy, Source: row.Source, DryRun: s.DryRun,
	}
	if r.MachineID == "" {
		// A row filling both names the device by its id; the name is
		// only informational then.
		r.ComputerDNSName = row.ComputerDNSName
	}
	if r.Comment == "" {
		r.Comment = s.Comment
	}
	if r.Source == "" {
		r.Source = Source(s.Name)
	}
	// A lastSeen that is no time is named after the other fields'
	// problems: notSeenSince is the request's last field.
	var lastSeenErr error
	if row.LastSeen != "" && !s.IgnoreLastSeen {
		r.NotSeenSince, lastSeenErr = ParseLastSeen(row.LastSeen)
	}
	// JSON would carry invalid bytes as U+FFFD: a name or comment in
	// another encoding (Latin-1) would be sent altered, not refused. The
	// first such cell in the request's field order is named, as the
	// worker's checks name the first problem: the same one at each run,
	// so that a run again writes the same report.
	for _, c := range []struct{ col, v string }{
		{ColMachineID, row.MachineID}, {ColComputerDNSName, row.ComputerDNSName}, {ColComment, r.Comment},
		{ColRequestedBy, row.RequestedBy}, {ColSource, row.Source},
	} {
		if !utf8.ValidString(c.v) {
			return r, nil, fmt.Errorf("%s is not UTF-8: save the CSV as UTF-8", c.col)
		}
	}
	data, err := json.Marshal(r)
	if err != nil {
		return r, nil, err
	}
	checked, err := offboard.ParseRequest(data, s.Tenant)
	if err != nil {
		return checked, nil, err
	}
	if lastSeenErr != nil {
		return checked, nil, lastSeenErr
	}
	return checked, data, nil
}

// NotFormula keeps a cell from being run as a formula when a CSV is
// opened in a spreadsheet (a plan to review, a campaign's report): one
// that begins with =, +, -, @, a tab or a carriage return begins with a
// quote. A device's tags are set on the device itself, its name by
// whoever runs it, and a campaign's CSV is the operator's. A valid
// device id begins with none of them and is never changed.
//
// A spreadsheet whose list separator is ';' (Excel in much of Europe)
// splits the file at each ';', and ends a line at a line break inside a
// quoted cell: what follows one begins a cell too, and begins with a
// quote when it would be run, or when it begins with a double quote (a
// cell of its own there, whose words are run as well).
func NotFormula(s string) string {
	if s == "" {
		return s
	}
	first := strings.IndexByte(formulaStart, s[0]) >= 0
	if !first && !strings.ContainsAny(s, ";\r\n") {
		return s
	}
	var b strings.Builder
	if first {
		b.WriteByte('\'')
	}
	for i := 0; i < len(s); i++ {
		b.WriteByte(s[i])
		if strings.IndexByte(";\r\n", s[i]) >= 0 && i+1 < len(s) && strings.IndexByte(formulaStart+`"`, s[i+1]) >= 0 {
			b.WriteByte('\'')
		}
	}
	return b.String()
}

// formulaStart holds the characters that make a cell a spreadsheet's
// formula when it begins with one.
const formulaStart = "=+-@\t\r"
