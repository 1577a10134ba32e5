package campaign

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// State of a row, one byte each.
const (
	stateNone byte = iota
	stateCreated
	stateAlreadyPending
	stateDryRun
	stateFailed
	stateUnpublished // the publish failed: no result will come in this run
	numStates
)

var outcomeState = map[offboard.Outcome]byte{
	offboard.OutcomeCreated: stateCreated, offboard.OutcomeAlreadyPending: stateAlreadyPending,
	offboard.OutcomeDryRun: stateDryRun, offboard.OutcomeFailed: stateFailed,
}

// Counts are a campaign's rows by what is known of them.
type Counts struct {
	Rows           int `json:"rows"`
	Created        int `json:"created"`
	AlreadyPending int `json:"already_pending"`
	DryRun         int `json:"dry_run"`
	Failed         int `json:"failed"`
	Unpublished    int `json:"unpublished,omitempty"`
	Waiting        int `json:"waiting"` // no result yet
}

// Answered is the number of rows with a result.
func (c Counts) Answered() int { return c.Created + c.AlreadyPending + c.DryRun + c.Failed }

// Rows is what a campaign run knows of each row, compactly: one state byte
// and the offset of its report fields in a spill file. A result's fields
// go to the file as they arrive, in any order; the report reads them back
// in row order. Memory is 10 bytes a row, whatever the results hold.
type Rows struct {
	name    string
	mu      sync.Mutex
	state   []byte
	attempt []byte  // attempt of the result held, at most 255
	off     []int64 // offset + 1 of the row's fields in spill; 0: none
	spill   *os.File
	size    int64
	counts  [numStates]int
	buf     bytes.Buffer
	w       *csv.Writer
	changed chan struct{}
}

// NewRows prepares the state of a campaign of n rows; the spill file goes
// to dir (empty: the system's temporary directory). Close removes it.
func NewRows(name string, n int, dir string) (*Rows, error) {
	f, err := os.CreateTemp(dir, "offboardctl-"+name+"-*.spill")
	if err != nil {
		return nil, fmt.Errorf("campaign state: %w", err)
	}
	r := &Rows{name: name, state: make([]byte, n+1), attempt: make([]byte, n+1), off: make([]int64, n+1),
		spill: f, changed: make(chan struct{}, 1)}
	r.counts[stateNone] = n
	r.w = csv.NewWriter(&r.buf)
	return r, nil
}

// Close removes the spill file.
func (r *Rows) Close() error {
	return errors.Join(r.spill.Close(), os.Remove(r.spill.Name()))
}

// Changed is signalled (without blocking) whenever a row's state changes.
func (r *Rows) Changed() <-chan struct{} { return r.changed }

// Has says whether the row has a result (or is known invalid).
func (r *Rows) Has(n int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return n < len(r.state) && r.state[n] != stateNone && r.state[n] != stateUnpublished
}

// Counts counts the rows by state.
func (r *Rows) Counts() Counts {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Counts{
		Rows: len(r.state) - 1, Created: r.counts[stateCreated], AlreadyPending: r.counts[stateAlreadyPending],
		DryRun: r.counts[stateDryRun], Failed: r.counts[stateFailed], Unpublished: r.counts[stateUnpublished],
		Waiting: r.counts[stateNone],
	}
}

// Result records res as the result of row n (ResultRow); false when its
// outcome is none of a result's. Of several results for one row (a
// retry), the highest attempt is kept; a created, already_pending or
// dry_run result of an earlier attempt is taken by a row that waits for
// a retry's (Retrying), as the retry is answered with it.
func (r *Rows) Result(n int, res *offboard.Result) (bool, error) {
	st, known := outcomeState[res.Outcome]
	if !known {
		return false, nil
	}
	code, msg := "", ""
	if res.Error != nil {
		code, msg = res.Error.Code, res.Error.Message
	}
	id, status := action(res.MachineAction)
	return true, r.set(n, st, min(res.Attempt, 255), []string{res.MachineID, res.ComputerDNSName, res.Outcome, code, msg, id, status})
}

// Outcome is the outcome of the row's result: created, already_pending,
// dry_run or failed (an invalid row too); empty when it has none.
func (r *Rows) Outcome(n int) offboard.Outcome {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n >= len(r.state) {
		return ""
	}
	for o, st := range outcomeState {
		if r.state[n] == st {
			return o
		}
	}
	return ""
}

// OtherDevice is the device the row's stored result names when it is not
// the device the row names (by machineId when the row gives one, else by
// computerDnsName, case-insensitive); empty when it is the same, or the
// row has no result, or the result names nothing to compare. A result
// of another device for the row's request id comes from an earlier run
// of the campaign's name with another CSV.
func (r *Rows) OtherDevice(row Row) (string, error) {
	fields, err := r.fields(row.N)
	if err != nil {
		return "", err
	}
	differs := func(want, got string) bool {
		// As the worker matches names: case and a final dot aside.
		want, got = strings.TrimSuffix(strings.TrimSpace(cell(want)), "."), strings.TrimSuffix(strings.TrimSpace(got), ".")
		return want != "" && got != "" && !strings.EqualFold(want, got)
	}
	switch {
	case row.MachineID != "" && fields[0] == "" && fields[1] != "":
		// The earlier row named its device by name alone.
		return fields[1], nil
	case row.MachineID != "":
		if differs(row.MachineID, fields[0]) {
			return fields[0], nil
		}
	case fields[1] == "" && fields[0] != "":
		// The earlier row named its device by id alone.
		return fields[0], nil
	case differs(row.ComputerDNSName, fields[1]):
		return fields[1], nil
	}
	return "", nil
}

// Invalid records a row that is not a valid request: it is not published
// and is reported failed with invalid_request.
func (r *Rows) Invalid(n int, req offboard.Request, problem string) error {
	return r.set(n, stateFailed, 255, []string{req.MachineID, req.ComputerDNSName, offboard.OutcomeFailed, offboard.CodeInvalidRequest, problem, "", ""})
}

// Withdrawn records a row not published because its campaign was
// cancelled: it is reported failed with cancelled, as the worker answers
// the rows it withdraws. A result that comes for the row (a request of
// an earlier run, waiting) takes its place.
func (r *Rows) Withdrawn(n int, row Row) error {
	return r.set(n, stateFailed, 0, []string{row.MachineID, row.ComputerDNSName, offboard.OutcomeFailed, offboard.CodeCancelled,
		"campaign " + offboard.Quote(r.name) + " was cancelled by an operator before the row was published", "", ""})
}

// Unpublished records a row whose publish failed.
func (r *Rows) Unpublished(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n < len(r.state) && r.state[n] == stateNone {
		r.move(n, stateUnpublished)
	}
}

func (r *Rows) set(n int, st byte, attempt int, fields []string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n >= len(r.state) {
		return nil // a row beyond this CSV's end: an earlier, longer CSV under the same name
	}
	if (r.off[n] != 0 || r.attempt[n] != 0) && attempt <= int(r.attempt[n]) && (r.off[n] != 0 || !final(st)) {
		// An attempt before the one held, or one Retrying waits past;
		// but a final result is what the retry will be answered with
		// (under its own attempt's message id, which the results stream
		// drops as a repeat): a row waiting takes it.
		return nil
	}
	r.buf.Reset()
	for i, f := range fields {
		fields[i] = cell(f)
	}
	fields[messageField] = cut(fields[messageField], reportMessageLength)
	if err := r.w.Write(fields); err != nil {
		return err
	}
	r.w.Flush()
	if _, err := r.spill.Write(r.buf.Bytes()); err != nil {
		return fmt.Errorf("campaign state: %w", err)
	}
	r.off[n] = r.size + 1
	r.size += int64(r.buf.Len())
	r.attempt[n] = byte(min(max(attempt, 0), 255))
	r.move(n, st)
	return nil
}

// Retrying makes row n wait for the result of a retry (attempt, more than
// 1) still in the request stream (offboardctl dead retry): a failed
// result it holds of an earlier attempt is dropped, and failed results of
// attempts before this one are ignored from now on. False for a row
// beyond the CSV, one that holds this attempt's result or a later one,
// or one that holds a final result (created, already_pending, dry_run):
// the worker answers the retry from its ledger with that result, of its
// own attempt, and the results stream drops it as a repeat, so the row
// would wait for a result that never comes.
func (r *Rows) Retrying(n, attempt int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n >= len(r.state) || min(attempt, 255) <= int(r.attempt[n]) && (r.off[n] != 0 || r.attempt[n] != 0) ||
		r.off[n] != 0 && final(r.state[n]) {
		return false
	}
	// At most 254: a result's attempt is held as at most 255, and the
	// retry's (255 or more) must still count as later.
	r.off[n], r.attempt[n] = 0, byte(min(max(attempt-1, 0), 254))
	if r.state[n] != stateNone {
		r.move(n, stateNone)
	}
	return true
}

// final says whether a row in state st holds a final result: the ledger
// answers every later attempt of its request id with that result.
func final(st byte) bool {
	return st == stateCreated || st == stateAlreadyPending || st == stateDryRun
}

func (r *Rows) move(n int, st byte) {
	r.counts[r.state[n]]--
	r.state[n] = st
	r.counts[st]++
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// reportMessageLength is how much of a failure's message the report keeps.
const reportMessageLength = 200

// reportCellLength is how much of any other cell the report keeps: more
// than a device's name (up to 255 characters) or an action's id holds,
// which cut short would name no device or action; only a cell that names
// none anyway (a row's garbage) is cut.
const reportCellLength = 1000

// messageField is the place of the message among a row's fields (set).
const messageField = 4

// cell makes a field one line (a line break or a tab is a space) of at
// most reportCellLength characters.
func cell(s string) string {
	return cut(strings.Map(func(c rune) rune {
		if c == '\n' || c == '\r' || c == '\t' {
			return ' '
		}
		return c
	}, s), reportCellLength)
}

// cut cuts s to limit characters, the last of them "…".
func cut(s string, limit int) string {
	if utf8.RuneCountInString(s) > limit {
		s = string([]rune(s)[:limit-1]) + "…"
	}
	return s
}

func action(raw json.RawMessage) (id, status string) {
	if len(raw) == 0 {
		return "", ""
	}
	var a struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	_ = json.Unmarshal(raw, &a)
	return a.ID, a.Status
}

// ReportHeader is the report's header row.
var ReportHeader = []string{"row", "requestId", "machineId", "computerDnsName", "outcome", "code", "message", "actionId", "actionStatus"}

// WriteReport writes the report: one line per CSV row in row order. csv
// is the campaign's CSV again, read for the devices as the rows name them;
// a row without a result has an empty outcome. A cell a spreadsheet would
// run as a formula begins with a quote (NotFormula), as in the plan: the
// report is opened in one, and its cells hold the CSV's words and the
// API's. The state read back keeps the cells as they came.
func (r *Rows) WriteReport(out io.Writer, csvFile io.Reader) error {
	rd, err := NewReader(csvFile)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(out)
	w := csv.NewWriter(bw)
	if err := w.Write(ReportHeader); err != nil {
		return err
	}
	line := make([]string, len(ReportHeader))
	for {
		row, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		fields, err := r.fields(row.N)
		if err != nil {
			return err
		}
		// The row's own names first; the result's where the row has none
		// (a device id resolved from its name).
		line[0], line[1] = strconv.Itoa(row.N), RequestID(r.name, row.N)
		line[2], line[3] = cmp.Or(cell(row.MachineID), fields[0]), cmp.Or(cell(row.ComputerDNSName), fields[1])
		copy(line[4:], fields[2:])
		for i := range line {
			line[i] = NotFormula(line[i])
		}
		if err := w.Write(line); err != nil {
			return err
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return err
	}
	return bw.Flush()
}

// fields reads a row's fields back from the spill file: machineId,
// computerDnsName, outcome, code, message, actionId, actionStatus.
func (r *Rows) fields(n int) ([]string, error) {
	r.mu.Lock()
	off, size := int64(0), r.size
	if n < len(r.off) {
		off = r.off[n]
	}
	r.mu.Unlock()
	if off == 0 {
		return make([]string, 7), nil
	}
	rec, err := csv.NewReader(io.NewSectionReader(r.spill, off-1, size-off+1)).Read()
	if err != nil {
		return nil, fmt.Errorf("campaign state of row %d: %w", n, err)
	}
	return rec, nil
}
