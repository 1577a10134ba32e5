package mde

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// MaxNameMatches is how many of the devices sharing a name a lookup keeps:
// as many as an ambiguous_machine result lists. The others are counted.
const MaxNameMatches = 100

// NameMatches is what a lookup by name found.
type NameMatches struct {
	// Machines are the first MaxNameMatches of the records named so, in
	// the API's order.
	Machines []Machine
	// Count is how many records of the answer bear the name.
	Count int
	// More says the answer holds only part of the list (@odata.nextLink).
	More bool
	// Err says why the answer could not be read as a list of devices.
	Err error
}

// SameName says whether two computer names are the same device name:
// Defender compares names without regard to the case of ASCII letters,
// as DNS does, and a final dot (a fully qualified name written absolute)
// changes nothing. Other letters are compared as they are: Unicode
// folding would take "deſktop" (long s) or "Kiosk" (Kelvin sign)
// for desktop and kiosk, names of other devices.
func SameName(a, b string) bool {
	return equalFoldASCII(strings.TrimSuffix(a, "."), strings.TrimSuffix(b, "."))
}

// equalFoldASCII says whether a and b are the same text but for the case
// of ASCII letters.
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lowerASCII(a[i]) != lowerASCII(b[i]) {
			return false
		}
	}
	return true
}

// lowerASCII is c in lower case when it is an ASCII capital letter.
func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// readNameMatches reads a list answer {"value": [...]} a record at a
// time, keeping the records named name (whatever else the API's filter
// let through), each read with token taken out of it. It reads as
// ParseMachineList does: a record that is not one, or an answer that is
// not a list, is Err.
func readNameMatches(r io.Reader, name, token string) *NameMatches {
	found := &NameMatches{}
	if err := found.read(json.NewDecoder(r), name, token); err != nil {
		found.Machines, found.Count, found.More = nil, 0, false
		found.Err = fmt.Errorf("read machines: %w", err)
	}
	return found
}

func (found *NameMatches) read(dec *json.Decoder, name, token string) error {
	if err := expectDelim(dec, '{'); err != nil {
		return err
	}
	listed := false
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return err
		}
		// Member names as encoding/json matches them: in any case.
		switch k, _ := key.(string); {
		case strings.EqualFold(k, "value"):
			if listed, err = found.readValue(dec, name, token); err != nil {
				return err
			}
		case strings.EqualFold(k, "@odata.nextLink"):
			var next *string
			if err := dec.Decode(&next); err != nil {
				return err
			}
			// Any link to a page says more follows: a null or empty
			// one beside it does not make the part the whole list.
			found.More = found.More || next != nil && *next != ""
		default:
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return err
			}
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("invalid character after top-level value")
	}
	if !listed {
		return errors.New(`the answer has no "value" list`)
	}
	return nil
}

// readValue reads the value member: false when it is null.
func (found *NameMatches) readValue(dec *json.Decoder, name, token string) (bool, error) {
	t, err := dec.Token()
	if err != nil {
		return false, err
	}
	if t == nil {
		found.Machines, found.Count = nil, 0
		return false, nil
	}
	if d, ok := t.(json.Delim); !ok || d != '[' {
		return false, errors.New(`"value" is not a list`)
	}
	found.Machines, found.Count = nil, 0 // the last "value" counts, as in encoding/json
	for dec.More() {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return false, err
		}
		var m Machine
		if err := json.Unmarshal(withoutToken(raw, token), &m); err != nil {
			return false, err
		}
		if !SameName(m.ComputerDNSName, name) {
			continue
		}
		found.Count++
		if len(found.Machines) < MaxNameMatches {
			found.Machines = append(found.Machines, m)
		}
	}
	return true, expectDelim(dec, ']')
}

// expectDelim reads the next token, which must be d.
func expectDelim(dec *json.Decoder, d json.Delim) error {
	t, err := dec.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return io.ErrUnexpectedEOF
		}
		return err
	}
	if got, ok := t.(json.Delim); !ok || got != d {
		return fmt.Errorf("expected %q, found %s", rune(d), kindOf(t))
	}
	return nil
}

// kindOf names what a JSON token is, never what it holds: a string may
// be the bearer token a gateway echoed, or megabytes long.
func kindOf(t json.Token) string {
	switch t := t.(type) {
	case json.Delim:
		return fmt.Sprintf("%q", rune(t))
	case string:
		return "a string"
	case nil:
		return "null"
	case bool:
		return "a boolean"
	default:
		return "a number"
	}
}
