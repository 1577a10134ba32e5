package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

func init() { commands = append(commands, newDeadCmd) }

func newDeadCmd(c *cli) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dead",
		Short: "List dead letters and retry them",
		Args:  noSubcommandArgs,
		RunE:  func(*cobra.Command, []string) error { return usagef("a dead command is required: ls or retry") },
	}
	cmd.AddCommand(newDeadLsCmd(c), newDeadRetryCmd(c))
	return cmd
}

// deadLetter is one message of MDE_OFFBOARD_DEAD, as listed.
type deadLetter struct {
	Seq       uint64    `json:"seq"`
	Tenant    string    `json:"tenant"`
	RequestID string    `json:"requestId"`
	Attempt   int       `json:"attempt"`
	Code      string    `json:"code"`
	Message   string    `json:"message"`
	Stored    time.Time `json:"stored"`
	Age       string    `json:"age"`

	subject string // Mde-Original-Subject
	body    []byte
	header  nats.Header
	// unchecked says why the dead letter is not a request the worker
	// checked: its body fails the request's checks, or its original
	// subject is no request subject of its tenant (nil: neither); set by
	// eachChecked, for a retry.
	unchecked error
	// forgotten says why the dead letter is too old to retry (nil: it
	// is not); set by markForgotten.
	forgotten error
}

func newDeadLsCmd(c *cli) *cobra.Command {
	var codes codeFilter
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ls [TENANT]",
		Short: "List dead letters: sequence, tenant, request id, attempt, code, message, age",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("%s takes at most one tenant; see %s --help", cmd.CommandPath(), cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			tenant := ""
			if len(args) == 1 {
				tenant = args[0]
				if err := checkTenantArg(tenant); err != nil && tenant != queue.UnknownTenant {
					// _unknown holds the dead letters of subjects whose
					// tenant is no tenant name: listed, not retried.
					return err
				}
			}
			if err := codes.check(cmd); err != nil {
				return err
			}
			// Each dead letter is written as it is read, without its
			// body: a stream of hundreds of thousands is listed in the
			// memory of its table's text alone.
			list := newListing(c.stdout, asJSON, "SEQ\tTENANT\tREQUEST ID\tATTEMPT\tCODE\tMESSAGE\tAGE")
			err := c.eachDead(cmd.Context(), tenant, func(d deadLetter) {
				if codes.match(d.Code) {
					list.addDead(d)
				}
			})
			return list.end(list.cutShort(cmd.Context(), err))
		},
	}
	codes.flag(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "JSON output")
	return cmd
}

// listing writes a list one item at a time: a JSON array, or a table
// aligned as a whole when it ends. dead ls and results list so: a stream
// of hundreds of thousands is listed in the memory of its table's text
// alone.
type listing struct {
	out io.Writer
	tw  *tabwriter.Writer // nil: JSON
	n   int
	err error
}

// newListing starts a list on out: a table under header (its columns
// separated by tabs), or with asJSON an array.
func newListing(out io.Writer, asJSON bool, header string) *listing {
	l := &listing{out: out}
	if !asJSON {
		l.tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(l.tw, header)
	}
	return l
}

// json says whether the list is a JSON array.
func (l *listing) json() bool { return l.tw == nil }

// row adds a table row of cells separated by tabs.
func (l *listing) row(format string, a ...any) {
	if l.err == nil {
		l.n++
		fmt.Fprintf(l.tw, format+"\n", a...)
	}
}

// item adds an array's item: JSON text indented by two spaces, written
// as jsonPrintable writes it.
func (l *listing) item(b []byte, err error) {
	if l.err != nil {
		return
	}
	if l.err = err; err != nil {
		return
	}
	l.n++
	sep := ",\n  "
	if l.n == 1 {
		sep = "[\n  "
	}
	_, l.err = fmt.Fprintf(l.out, "%s%s", sep, jsonPrintable(b))
}

// cutShort is the error of a read that ended with err: one interrupted
// (ctx ended), or, with a part listed, one that says the list is not
// whole (NATS lost after a part was listed: that part reads as a whole
// list, unless told).
func (l *listing) cutShort(ctx context.Context, err error) error {
	switch {
	case err != nil && ctx.Err() != nil:
		return fmt.Errorf("interrupted: the list is not whole (%d listed; %w)", l.n, context.Cause(ctx))
	case err != nil && l.n > 0:
		return fmt.Errorf("the list is not whole (%d listed): %w", l.n, err)
	}
	return err
}

// end writes what closes the list: the table, or the array's end ([] when
// nothing was listed). A read cut short after some were listed (readErr:
// Ctrl-C, a lost connection) still closes what was written, so that the
// part listed reads as a table or as JSON; readErr is returned, and the
// exit status says the list is not whole.
func (l *listing) end(readErr error) error {
	var err error
	switch {
	case l.err != nil:
		return l.err
	case readErr != nil && l.n == 0:
		return readErr
	case l.tw != nil:
		err = l.tw.Flush()
	case l.n == 0:
		_, err = fmt.Fprintln(l.out, "[]")
	default:
		_, err = fmt.Fprintln(l.out, "\n]")
	}
	return cmp.Or(readErr, err)
}

// addDead lists a dead letter, without its body.
func (l *listing) addDead(d deadLetter) {
	if l.json() {
		l.item(json.MarshalIndent(d, "  ", "  "))
		return
	}
	msg := printable(d.Message)
	if r := []rune(msg); len(r) > 80 {
		msg = string(r[:79]) + "…"
	}
	l.row("%d\t%s\t%s\t%d\t%s\t%s\t%s", d.Seq, printable(d.Tenant), shownID(d.RequestID), d.Attempt, printable(d.Code), msg, d.Age)
}

// codeFilter is --code of dead ls and dead retry: the failure codes of
// the dead letters to take, any of them; none for every dead letter.
type codeFilter []string

// flag adds --code to cmd, given more than once, or with codes separated
// by commas (no failure code holds one), for any of several. Each value
// is kept as given (a string array, not pflag's string slice, which
// drops an empty one after the first) and split by check.
func (f *codeFilter) flag(cmd *cobra.Command) {
	cmd.Flags().StringArrayVar((*[]string)(f), "code", nil, "only dead letters with this failure code (repeat, or separate by commas, for any of several)")
}

// check splits the codes given at their commas and refuses one that is
// empty or not one of the contract's failure codes: a typo would match
// nothing, and say so only as an empty list.
func (f *codeFilter) check(cmd *cobra.Command) error {
	var codes codeFilter
	for _, v := range *f {
		codes = append(codes, strings.Split(v, ",")...)
	}
	for _, code := range codes {
		if code == "" {
			// An unset shell variable: on its own, no filter would act
			// on every letter.
			return usagef("--code is empty: give a failure code, or leave the flag out")
		}
		if !slices.Contains(offboard.FailureCodes, code) {
			return usagef("--code %s is not a failure code; one of %s", offboard.Quote(code), strings.Join(offboard.FailureCodes, ", "))
		}
	}
	*f = codes
	return nil
}

// match says whether a dead letter's code is one asked for.
func (f codeFilter) match(code string) bool { return len(f) == 0 || slices.Contains(f, code) }

// String is the codes asked for, as a sentence shows them: "api_error or
// forbidden".
func (f codeFilter) String() string { return strings.Join(f, " or ") }

// eachChecked hands each dead letter of a tenant ("": all) to fn, in
// order, with its body and headers (to retry it), checked as the worker
// checks a request.
func (c *cli) eachChecked(ctx context.Context, tenant string, fn func(deadLetter)) error {
	return c.eachDead(ctx, tenant, func(d deadLetter) {
		// A request on a subject of no request form (request.<tenant>.urgent)
		// is answered invalid_request apart from its request id, as a
		// malformed copy is, whatever its body.
		if t, _, ok := c.subjects.ParseRequest(d.subject); !ok || t != d.Tenant {
			d.unchecked = fmt.Errorf("its original subject %s is not a request subject of tenant %s", offboard.Quote(d.subject), d.Tenant)
		} else {
			_, d.unchecked = offboard.ParseRequest(d.body, d.Tenant)
		}
		fn(d)
	})
}

// eachDead hands each dead letter of a tenant ("": all) to fn, in order.
// A tenant with no dead letter at all must be one a worker has set up
// (knownTenant): a typo would read as a tenant with nothing failed. One
// removed from the tenants files may still have dead letters: they are
// read all the same.
func (c *cli) eachDead(ctx context.Context, tenant string, fn func(deadLetter)) error {
	js, err := c.connect(ctx)
	if err != nil {
		return err
	}
	subject := c.subjects.Dead(tenant)
	if tenant == "" {
		subject = c.subjects.Dead(">")
	}
	now := time.Now()
	seen := false
	err = scan(ctx, js, offboard.StreamDead, subject, func(m jetstream.Msg) {
		seen = true
		fn(c.readDead(m, now))
	})
	if err != nil {
		return err
	}
	if tenant != "" && tenant != queue.UnknownTenant && !seen {
		kctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		return knownTenant(kctx, js, tenant, "it has no dead letters either", "")
	}
	return nil
}

func (c *cli) readDead(m jetstream.Msg, now time.Time) deadLetter {
	h := m.Headers()
	d := deadLetter{
		Tenant: strings.TrimPrefix(m.Subject(), c.subjects.Dead("")), Code: h.Get(offboard.HeaderErrorCode),
		Message: h.Get(offboard.HeaderErrorMessage), subject: h.Get(offboard.HeaderOriginalSubject),
		body: m.Data(), header: h,
	}
	if meta, err := m.Metadata(); err == nil {
		d.Seq, d.Stored = meta.Sequence.Stream, meta.Timestamp.UTC()
		d.Age = age(now.Sub(meta.Timestamp))
	}
	// Best effort: a body that failed its checks may have neither.
	var r struct {
		RequestID string `json:"requestId"`
		Attempt   int    `json:"attempt"`
	}
	_ = json.Unmarshal(d.body, &r)
	d.RequestID, d.Attempt = r.RequestID, max(r.Attempt, 1)
	return d
}

// shownID is a dead letter's request id as shown: as it is when it has a
// request id's form, else escaped as the worker's messages show it. The
// body is the publisher's, and a request id that failed its checks may
// hold a newline or a terminal escape that would forge lines.
func shownID(id string) string {
	if id == "" || offboard.ValidRequestID(id) {
		return orNone(id)
	}
	return offboard.Quote(id)
}

// printable shows a dead letter's message in a table, or a plan's
// failure: the text of an API or proxy answer may hold terminal escapes,
// tabs or line breaks, which would redraw the screen or shift the
// columns. Such a character is written escaped, as Go quotes it; the
// rest is left as it is.
func printable(s string) string { return offboard.Printable(s) }

// jsonPrintable is JSON text with each character that is not printable
// and that encoding/json leaves as it is (C1 controls such as U+009B,
// which some terminals take for the start of an escape, bidirectional
// overrides) written as a \u escape, as it writes the other control
// characters: the same values, safe to show on a terminal. Such a
// character can only be inside a string: JSON's own characters are
// ASCII.
func jsonPrintable(b []byte) []byte {
	if !bytes.ContainsFunc(b, func(r rune) bool { return r >= utf8.RuneSelf && !unicode.IsPrint(r) }) {
		return b
	}
	out := make([]byte, 0, len(b)+16)
	for _, r := range string(b) {
		switch {
		case r < utf8.RuneSelf || unicode.IsPrint(r):
			out = utf8.AppendRune(out, r)
		case r > 0xFFFF:
			r1, r2 := utf16.EncodeRune(r)
			out = fmt.Appendf(out, `\u%04x\u%04x`, r1, r2)
		default:
			out = fmt.Appendf(out, `\u%04x`, r)
		}
	}
	return out
}

// age shows how long ago something was stored, d, as dead ls lists it.
// A time the server stamped ahead of this machine's clock (this clock
// behind the server's) is no age below zero: it was stored just now.
func age(d time.Duration) string {
	d = max(d, 0)
	switch {
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// withAttempt rewrites a JSON object's attempt member to n, keeping every
// other byte; without one, it adds it first.
func withAttempt(body []byte, n int) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("the body is not a JSON object")
	}
	open := dec.InputOffset()
	val := []byte(strconv.Itoa(n))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("the body is not JSON: %w", err)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("the body is not JSON: %w", err)
		}
		if tok == "attempt" {
			end := int(dec.InputOffset())
			start := end - len(raw)
			return append(append(append([]byte{}, body[:start]...), val...), body[end:]...), nil
		}
	}
	sep := ","
	if len(bytes.TrimSpace(body[open:])) == 1 { // {}
		sep = ""
	}
	return append(append(append([]byte{}, body[:open]...), []byte(`"attempt":`+string(val)+sep)...), body[open:]...), nil
}
