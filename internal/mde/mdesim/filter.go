package mdesim

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The OData $filter subset understood by the simulator:
//
//	expr    = and { "or" and }
//	and     = primary { "and" primary }
//	primary = "(" expr ")"
//	        | field op literal
//	        | "startswith(" field "," string ")"
//
// String fields take eq and ne with a single-quoted literal (a quote inside
// is doubled) and compare case-insensitively. Enumeration fields
// (healthStatus, a machine action's type and status) take eq and ne with a
// single-quoted member name, bound as OData binds a string to an enum
// member: by its exact name, any other literal being an error. Time
// fields take eq, ne, gt, ge, lt and le with a bare date-time literal
// such as 2024-05-01T10:00:00Z or 2024-05-01Z; number fields (rbacGroupId)
// the same operators with an integer. Field names are case-sensitive, as
// in OData.

type fieldKind int

const (
	kindString fieldKind = iota
	kindTime
	kindNumber
	kindEnum
)

// schema maps the filterable fields of an entity to their kinds.
type schema struct {
	entity string // for messages, e.g. "PublicMachineDto"
	fields map[string]fieldKind
	// enums holds the members of each kindEnum field, as the resource
	// type's documentation lists them.
	enums map[string][]string
}

// machineSchema holds the filterable device properties the simulator
// serves, each one the List machines API documents as filterable
// (firstSeen, served in every record, is not).
var machineSchema = schema{
	entity: "microsoft.windowsDefenderATP.api.PublicMachineDto",
	fields: map[string]fieldKind{
		"id":               kindString,
		"computerDnsName":  kindString,
		"osPlatform":       kindString,
		"healthStatus":     kindEnum,
		"onboardingStatus": kindString,
		"lastSeen":         kindTime,
		"rbacGroupId":      kindNumber,
	},
	enums: map[string][]string{
		"healthStatus": {"Active", "Inactive", "ImpairedCommunication", "NoSensorData", "NoSensorDataImpairedCommunication", "Unknown"},
	},
}

var actionSchema = schema{
	entity: "microsoft.windowsDefenderATP.api.PublicMachineActionDto",
	fields: map[string]fieldKind{
		"id":                  kindString,
		"status":              kindEnum,
		"machineId":           kindString,
		"type":                kindEnum,
		"requestor":           kindString,
		"creationDateTimeUtc": kindTime,
	},
	enums: map[string][]string{
		"status": {StatusPending, StatusInProgress, StatusSucceeded, StatusFailed, StatusTimeOut, StatusCancelled},
		"type": {"RunAntiVirusScan", "Offboard", "LiveResponse", "CollectInvestigationPackage", "Isolate", "Unisolate",
			"StopAndQuarantineFile", "RestrictCodeExecution", "UnrestrictCodeExecution"},
	},
}

// record gives a field's value: a string or a time.Time.
type record func(field string) any

type filterExpr func(record) bool

type tokKind int

const (
	tokWord tokKind = iota
	tokString
	tokLParen
	tokRParen
	tokComma
	tokEnd
)

type token struct {
	kind tokKind
	text string
	pos  int
}

func tokenize(src string) ([]token, error) {
	var toks []token
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(':
			toks = append(toks, token{tokLParen, "(", i})
			i++
		case c == ')':
			toks = append(toks, token{tokRParen, ")", i})
			i++
		case c == ',':
			toks = append(toks, token{tokComma, ",", i})
			i++
		case c == '\'':
			start := i
			var b strings.Builder
			i++
			for {
				if i >= len(src) {
					return nil, fmt.Errorf("unterminated string literal at position %d", start)
				}
				if src[i] == '\'' {
					if i+1 < len(src) && src[i+1] == '\'' {
						b.WriteByte('\'')
						i += 2
						continue
					}
					i++
					break
				}
				b.WriteByte(src[i])
				i++
			}
			toks = append(toks, token{tokString, b.String(), start})
		default:
			start := i
			for i < len(src) && !strings.ContainsRune(" \t\r\n(),'", rune(src[i])) {
				i++
			}
			toks = append(toks, token{tokWord, src[start:i], start})
		}
	}
	return append(toks, token{tokEnd, "", len(src)}), nil
}

type filterParser struct {
	toks []token
	pos  int
	sch  schema
}

// parseFilter compiles src against sch.
func parseFilter(src string, sch schema) (filterExpr, error) {
	toks, err := tokenize(src)
	if err != nil {
		return nil, err
	}
	p := &filterParser{toks: toks, sch: sch}
	if p.peek().kind == tokEnd {
		return nil, errors.New("empty $filter")
	}
	e, err := p.or()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tokEnd {
		return nil, fmt.Errorf("syntax error at position %d in '%s'", t.pos, src)
	}
	return e, nil
}

func (p *filterParser) peek() token { return p.toks[p.pos] }

func (p *filterParser) next() token {
	t := p.toks[p.pos]
	if t.kind != tokEnd {
		p.pos++
	}
	return t
}

func (p *filterParser) or() (filterExpr, error) {
	return p.binary("or", p.and, func(l, r bool) bool { return l || r })
}

func (p *filterParser) and() (filterExpr, error) {
	return p.binary("and", p.primary, func(l, r bool) bool { return l && r })
}

// binary parses operand { op operand }, left-associative, combining the
// operands' values with join.
func (p *filterParser) binary(op string, operand func() (filterExpr, error), join func(l, r bool) bool) (filterExpr, error) {
	left, err := operand()
	if err != nil {
		return nil, err
	}
	for t := p.peek(); t.kind == tokWord && t.text == op; t = p.peek() {
		p.next()
		right, err := operand()
		if err != nil {
			return nil, err
		}
		l := left
		left = func(r record) bool { return join(l(r), right(r)) }
	}
	return left, nil
}

func (p *filterParser) primary() (filterExpr, error) {
	t := p.next()
	switch t.kind {
	case tokLParen:
		e, err := p.or()
		if err != nil {
			return nil, err
		}
		if c := p.next(); c.kind != tokRParen {
			return nil, fmt.Errorf("')' expected at position %d", c.pos)
		}
		return e, nil
	case tokWord:
	default:
		return nil, fmt.Errorf("syntax error at position %d", t.pos)
	}
	if p.peek().kind == tokLParen {
		return p.function(t)
	}
	return p.comparison(t)
}

// comparison parses the rest of field op literal, the field being name.
func (p *filterParser) comparison(name token) (filterExpr, error) {
	kind, err := p.field(name)
	if err != nil {
		return nil, err
	}
	op := p.next()
	if op.kind != tokWord {
		return nil, fmt.Errorf("operator expected at position %d", op.pos)
	}
	lit := p.next()
	switch kind {
	case kindString:
		return stringComparison(name.text, op, lit)
	case kindNumber:
		return numberComparison(name.text, op, lit)
	case kindEnum:
		return enumComparison(name.text, op, lit, p.sch.enums[name.text])
	}
	return timeComparison(name.text, op, lit)
}

func stringComparison(name string, op, lit token) (filterExpr, error) {
	if op.text != "eq" && op.text != "ne" {
		return nil, fmt.Errorf("operator '%s' is not supported for property '%s'", op.text, name)
	}
	if lit.kind != tokString {
		return nil, fmt.Errorf("a single-quoted string is expected at position %d for property '%s'", lit.pos, name)
	}
	want, neg := lit.text, op.text == "ne"
	return func(r record) bool {
		v, _ := r(name).(string)
		return strings.EqualFold(v, want) != neg
	}, nil
}

// enumComparison compares an enumeration field with a member named by a
// string literal: the name must be one of members, in its exact case, as
// OData's binder requires (The string 'x' is not a valid enumeration type
// constant).
func enumComparison(name string, op, lit token, members []string) (filterExpr, error) {
	if op.text != "eq" && op.text != "ne" {
		return nil, fmt.Errorf("operator '%s' is not supported for property '%s'", op.text, name)
	}
	if lit.kind != tokString {
		return nil, fmt.Errorf("a single-quoted string is expected at position %d for property '%s'", lit.pos, name)
	}
	if !slices.Contains(members, lit.text) {
		return nil, fmt.Errorf("the string '%s' is not a valid enumeration type constant", lit.text)
	}
	want, neg := lit.text, op.text == "ne"
	return func(r record) bool {
		v, _ := r(name).(string)
		return (v == want) != neg
	}, nil
}

// timeOps maps the time comparison operators to tests of a Compare result.
var timeOps = map[string]func(int) bool{
	"eq": func(c int) bool { return c == 0 },
	"ne": func(c int) bool { return c != 0 },
	"gt": func(c int) bool { return c > 0 },
	"ge": func(c int) bool { return c >= 0 },
	"lt": func(c int) bool { return c < 0 },
	"le": func(c int) bool { return c <= 0 },
}

func timeComparison(name string, op, lit token) (filterExpr, error) {
	if lit.kind != tokWord {
		return nil, fmt.Errorf("a date-time literal is expected at position %d for property '%s'", lit.pos, name)
	}
	want, err := parseODataTime(lit.text)
	if err != nil {
		return nil, err
	}
	cmp, ok := timeOps[op.text]
	if !ok {
		return nil, fmt.Errorf("unknown operator '%s' at position %d", op.text, op.pos)
	}
	return func(r record) bool {
		v, _ := r(name).(time.Time)
		return cmp(v.Compare(want))
	}, nil
}

func numberComparison(name string, op, lit token) (filterExpr, error) {
	want, err := strconv.ParseInt(lit.text, 10, 64)
	if lit.kind != tokWord || err != nil {
		return nil, fmt.Errorf("an integer literal is expected at position %d for property '%s'", lit.pos, name)
	}
	cmp, ok := timeOps[op.text]
	if !ok {
		return nil, fmt.Errorf("unknown operator '%s' at position %d", op.text, op.pos)
	}
	return func(r record) bool {
		v, _ := r(name).(int64)
		switch {
		case v < want:
			return cmp(-1)
		case v > want:
			return cmp(1)
		}
		return cmp(0)
	}, nil
}

func (p *filterParser) field(t token) (fieldKind, error) {
	if t.kind != tokWord {
		return 0, fmt.Errorf("property name expected at position %d", t.pos)
	}
	kind, ok := p.sch.fields[t.text]
	if !ok {
		return 0, fmt.Errorf("could not find a property named '%s' on type '%s'", t.text, p.sch.entity)
	}
	return kind, nil
}

func (p *filterParser) function(name token) (filterExpr, error) {
	if name.text != "startswith" {
		return nil, fmt.Errorf("unknown function '%s'", name.text)
	}
	p.next() // (
	f := p.next()
	kind, err := p.field(f)
	if err != nil {
		return nil, err
	}
	if kind != kindString {
		return nil, fmt.Errorf("no function signature for 'startswith' matches property '%s'", f.text)
	}
	if c := p.next(); c.kind != tokComma {
		return nil, fmt.Errorf("',' expected at position %d", c.pos)
	}
	lit := p.next()
	if lit.kind != tokString {
		return nil, fmt.Errorf("a single-quoted string is expected at position %d", lit.pos)
	}
	if c := p.next(); c.kind != tokRParen {
		return nil, fmt.Errorf("')' expected at position %d", c.pos)
	}
	prefix := strings.ToLower(lit.text)
	return func(r record) bool {
		v, _ := r(f.text).(string)
		return strings.HasPrefix(strings.ToLower(v), prefix)
	}, nil
}

func parseODataTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04Z07:00", "2006-01-02Z07:00", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("'%s' is not a valid date-time literal", s)
}
