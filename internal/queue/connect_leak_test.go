package queue

import (
	"strings"
	"testing"
)

// No part of a password or token reaches Check's error or RedactURLs, nor
// (Check refusing it first) the dial error of a host taken from it: a ','
// in a token or after a password's digits, two ',', a '/', '?' or '#'
// ending the authority early. A schemeless URL with a user after another
// URL cannot be told from these: it is refused too.
func TestCheckRefusesURLsThatLeakAPassword(t *testing.T) {
	t.Parallel()
	for _, u := range []string{
		"nats://alice:S3CR3T,b,c@nats.example:4222",
		"alice:S3CR3T,b,c@nats.example:4222",
		"nats://alice:4222,S3CR3T@nats.example:4222",
		"nats://alice:4222,S3CR3T:x@nats.example:4222",
		"nats://S3CR3T,tok@nats.example:4222",
		"nats://S3CR3T/tok@nats.example:4222",
		"nats://S3CR3T?tok@nats.example:4222",
		"nats://S3CR3T#tok@nats.example:4222",
		"nats://alice:4222/S3CR3T@nats.example:4222",
		"nats://n1:4222, b:S3CR3T@n2:4222",
		"nats://n1,b:S3CR3T@n2",
	} {
		err := Conn{URL: u}.Check()
		if err == nil {
			t.Errorf("Check(%q) = nil", u)
		} else if strings.Contains(err.Error(), "S3CR3T") || strings.Contains(err.Error(), "alice") || strings.Contains(err.Error(), "4222,") {
			t.Errorf("Check(%q) = %v", u, err)
		}
		if r := RedactURLs(u); strings.Contains(r, "S3CR3T") || strings.Contains(r, "alice") {
			t.Errorf("RedactURLs(%q) = %q", u, r)
		}
	}
}
