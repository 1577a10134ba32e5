package queue

import (
	"strings"
	"testing"
)

// A ',' in a user or password splits the server list (the client library
// splits it too): Check refuses such a URL, and neither its error nor
// RedactURLs shows any part of the password. Lists of URLs, with a
// scheme or without, are kept apart.
func TestCheckNamesNoPartOfAPassword(t *testing.T) {
	t.Parallel()
	for _, u := range []string{
		"nats://alice:s3cr3t,tail@nats.example:4222",
		"alice:s3cr3t,tail@nats.example:4222",
		"nats://n1:4222, nats://alice:s3cr3t,tail@nats.example:4222",
	} {
		err := Conn{URL: u}.Check()
		if err == nil || strings.Contains(err.Error(), "s3cr3t") || strings.Contains(err.Error(), "alice") {
			t.Errorf("Check(%q) = %v", u, err)
		}
		if r := RedactURLs(u); strings.Contains(r, "s3cr3t") || strings.Contains(r, "alice") {
			t.Errorf("RedactURLs(%q) = %q", u, r)
		}
	}
	for _, u := range []string{"nats://a:p@n1:4222,nats://b:q@n2:4222", "a:p@n1:4222, b:q@n2:4222", "n1:4222,n2:4222", "nats://n1,nats://n2"} {
		if err := (Conn{URL: u}).Check(); err != nil {
			t.Errorf("Check(%q) = %v", u, err)
		}
		if r := RedactURLs(u); strings.Contains(r, ":p@") || strings.Count(r, ",") != 1 {
			t.Errorf("RedactURLs(%q) = %q", u, r)
		}
	}
}
