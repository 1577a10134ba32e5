package queue

import (
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
)

// Conn is how a process connects to NATS: the worker and offboardctl take
// the same settings, named as the nats command line names them.
type Conn struct {
	URL     string // one URL, or several separated by commas
	Creds   string // credentials file
	TLSCA   string // CA bundle to trust for the server
	TLSCert string // client certificate, with TLSKey
	TLSKey  string
	// InboxPrefix replaces _INBOX in the subjects replies come back on
	// (requests, JetStream API answers, publish acknowledgements, pull
	// consumers' messages), so a NATS account can let each user read its
	// own replies only. Empty: _INBOX.
	InboxPrefix string
}

// Check refuses settings that cannot work together.
func (c Conn) Check() error {
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("--tlscert and --tlskey go together")
	}
	if p := c.InboxPrefix; p != "" && (strings.ContainsAny(p, "*> \t\r\n") || strings.HasPrefix(p, ".") ||
		strings.HasSuffix(p, ".") || strings.Contains(p, "..")) {
		return fmt.Errorf("--nats-inbox-prefix %q: want subject tokens without wildcards or white space, such as _INBOX_<user>", p)
	}
	return nil
}

// Options are the connection options the settings ask for.
func (c Conn) Options() []nats.Option {
	var o []nats.Option
	if c.Creds != "" {
		o = append(o, nats.UserCredentials(c.Creds))
	}
	if c.TLSCA != "" {
		o = append(o, nats.RootCAs(c.TLSCA))
	}
	if c.TLSCert != "" {
		o = append(o, nats.ClientCert(c.TLSCert, c.TLSKey))
	}
	if c.InboxPrefix != "" {
		o = append(o, nats.CustomInboxPrefix(c.InboxPrefix))
	}
	return o
}

// RedactURLs drops the user information of each URL in a comma-separated
// NATS server list, so a message can name the servers without
// credentials, whether a URL has a scheme or not ("alice:pw@host:4222").
func RedactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		scheme, rest, ok := strings.Cut(p, "://")
		if !ok {
			scheme, rest = "", p
		}
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			rest = rest[at+1:]
		}
		if scheme != "" {
			rest = scheme + "://" + rest
		}
		parts[i] = rest
	}
	return strings.Join(parts, ",")
}
