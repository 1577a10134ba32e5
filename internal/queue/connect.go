package queue

import (
	"errors"
	"net/url"

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
}

// Check refuses settings that cannot work together.
func (c Conn) Check() error {
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("--tlscert and --tlskey go together")
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
	return o
}

// RedactURL is a server URL without its user and password, for messages.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	u.User = nil
	return u.String()
}
