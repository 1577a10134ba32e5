package mde

import (
	"strings"
	"testing"
)

// An answer that is JSON but no object (a proxy's or a cache's [] or
// "text") is told as what it is. encoding/json's error named the Go type
// it was read into ("struct { Value *[]mde.Machine "json:\"value\""; ...
// }"), which went into the request's result as its message.
func TestAnswerThatIsNoObject(t *testing.T) {
	t.Parallel()
	parsers := map[string]func([]byte) error{
		"ParseAction":      func(b []byte) error { _, err := ParseAction(b); return err },
		"ParseActions":     func(b []byte) error { _, err := ParseActions(b); return err },
		"ParseMachine":     func(b []byte) error { _, err := ParseMachine(b); return err },
		"ParseMachineList": func(b []byte) error { _, _, err := ParseMachineList(b); return err },
	}
	for body, want := range map[string]string{
		`[]`:          "a JSON array",
		` [{"id":1}]`: "a JSON array",
		`"x"`:         "a JSON string",
		`12`:          "a JSON number",
		`true`:        "a JSON boolean",
	} {
		for name, parse := range parsers {
			err := parse([]byte(body))
			if err == nil {
				t.Errorf("%s(%s): no error", name, body)
				continue
			}
			if msg := err.Error(); !strings.Contains(msg, want) || strings.Contains(msg, "Go value") || strings.Contains(msg, "struct") {
				t.Errorf("%s(%s) = %q, want it to say %q and name no Go type", name, body, msg, want)
			}
		}
	}
}
