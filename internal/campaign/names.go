package campaign

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// SourcePrefix starts the source of a campaign's requests: campaign:<name>.
const SourcePrefix = "campaign:"

// rowDigits is the width of the row number in a request id.
const rowDigits = 6

// MaxRows is the most rows a campaign may have: row numbers have six digits.
const MaxRows = 999_999

var nameForm = regexp.MustCompile(`^[a-z0-9._-]{1,120}$`)

// ValidName says whether name can name a campaign: [a-z0-9._-], short
// enough that its request ids fit the contract's 128 characters, and
// usable in a control bucket key (campaign.<tenant>.<name>): no leading
// or trailing '.', no "..". A name the bucket refuses could not be
// cancelled.
func ValidName(name string) bool {
	return nameForm.MatchString(name) && !strings.HasPrefix(name, ".") && !strings.HasSuffix(name, ".") && !strings.Contains(name, "..")
}

// NameFromFile is the default campaign name of a CSV file: its base name
// without extension, lower-cased, with anything outside [a-z0-9._-]
// replaced by '-', runs of '.' made one and '.' trimmed from both ends,
// so that it is a valid name whenever it is not empty or too long.
func NameFromFile(path string) string {
	base := filepath.Base(path)
	base = strings.TrimSuffix(base, filepath.Ext(base))
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			return r
		}
		return '-'
	}, strings.ToLower(base))
	for strings.Contains(name, "..") {
		name = strings.ReplaceAll(name, "..", ".")
	}
	return strings.Trim(name, ".")
}

// RequestID is the request id of a campaign's row (1-based).
func RequestID(name string, row int) string {
	return fmt.Sprintf("%s-%0*d", name, rowDigits, row)
}

// Source is the source a campaign's requests carry unless a row says
// otherwise.
func Source(name string) string { return SourcePrefix + name }

// RowOf is the row number of one of the campaign's request ids; ok is false
// when the id is not one of them.
func RowOf(name, requestID string) (row int, ok bool) {
	rest, found := strings.CutPrefix(requestID, name+"-")
	if !found || len(rest) != rowDigits {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 1 || rest[0] == '+' || rest[0] == '-' {
		return 0, false
	}
	return n, true
}

// ResultRow is the row of the campaign a result answers; ok is false when
// it answers none. A result whose code is invalid_request answers a
// message that failed the worker's checks: the row's own request (a
// worker whose checks are stricter than offboardctl's, during a rolling
// update), or a malformed copy that reuses the row's request id, which the
// worker answers apart from the request id (under its place in the
// stream). Only its requestSeq tells them apart: it is the row's when own
// says the row's request is at that place; taken for the row's, a copy's
// stood for the row's result, and the row was not published or waited
// for.
func ResultRow(name string, res *offboard.Result, own func(row int, seq uint64) bool) (row int, ok bool) {
	n, ok := RowOf(name, res.RequestID)
	if ok && res.Error != nil && res.Error.Code == offboard.CodeInvalidRequest {
		ok = own != nil && own(n, res.RequestSeq)
	}
	return n, ok
}

// Names are the campaigns a request may belong to: the one its source
// names, and the one its request id has the form of (a row may set its
// own source). Either may be empty.
func Names(r offboard.Request) (bySource, byID string) {
	if n, ok := strings.CutPrefix(r.Source, SourcePrefix); ok && ValidName(n) {
		bySource = n
	}
	id := r.RequestID
	if len(id) > rowDigits+1 && id[len(id)-rowDigits-1] == '-' {
		n := id[:len(id)-rowDigits-1]
		if _, ok := RowOf(n, id); ok && ValidName(n) {
			byID = n
		}
	}
	return bySource, byID
}
