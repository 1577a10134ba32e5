package config

import (
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"
)

// budget is what one call of a comment template's function may still
// build: maxCommentOutput bytes, where its output is cut.
type budget struct{ left int }

// take keeps of s what the budget leaves room for, and counts it. Once
// it cuts s, the budget is spent: what a whole output would have after
// a character the cut splits is past the cut too.
func (b *budget) take(s string) string {
	if len(s) > b.left {
		s = cutTo(s, b.left)
		b.left = 0
		return s
	}
	b.left -= len(s)
	return s
}

// boundedSprint is fmt.Sprint of args (fmt.Sprintln if line), cut at
// maxCommentOutput: it stops at the argument that fills the cut, so
// that a long text given many times is not joined whole first. Spaces go
// where fmt puts them: between operands neither of which is a string
// (between any two with line).
func boundedSprint(args []any, line bool) string {
	b := &budget{left: maxCommentOutput}
	var out strings.Builder
	prevString := false
	for i, arg := range args {
		isString := arg != nil && reflect.TypeOf(arg).Kind() == reflect.String
		if i > 0 && (line || !isString && !prevString) {
			out.WriteString(b.take(" "))
		}
		out.WriteString(b.take(fmt.Sprint(arg)))
		prevString = isString
		if b.left <= 0 {
			return out.String()
		}
	}
	if line {
		out.WriteString(b.take("\n"))
	}
	return out.String()
}

// boundedSprintf is fmt.Sprintf cut at maxCommentOutput. Each argument
// is formatted by boundedArg, under one budget: a verb's width or
// precision is taken no wider than what the budget leaves, and once it
// is spent the verbs left write nothing. Widths given as arguments (*)
// are not taken: an argument is no int to fmt any more.
func boundedSprintf(format string, args ...any) string {
	b := &budget{left: maxCommentOutput}
	wrapped := make([]any, len(args))
	for i, a := range args {
		wrapped[i] = boundedArg{v: a, b: b}
	}
	return cutOutput(fmt.Sprintf(format, wrapped...))
}

// boundedArg is an argument of boundedSprintf.
type boundedArg struct {
	v any
	b *budget
}

// Format formats the argument as its verb asks, within the budget.
func (a boundedArg) Format(f fmt.State, verb rune) {
	if a.b.left <= 0 {
		return
	}
	spec := []byte{'%'}
	for _, flag := range "+-# 0" {
		if f.Flag(int(flag)) {
			spec = utf8.AppendRune(spec, flag)
		}
	}
	if w, ok := f.Width(); ok {
		spec = strconv.AppendInt(spec, int64(min(w, a.b.left)), 10)
	}
	if p, ok := f.Precision(); ok {
		spec = append(spec, '.')
		spec = strconv.AppendInt(spec, int64(min(p, a.b.left)), 10)
	}
	spec = utf8.AppendRune(spec, verb)
	_, _ = io.WriteString(f, a.b.take(fmt.Sprintf(string(spec), a.v)))
}
