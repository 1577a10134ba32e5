package queue

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/contoso-secops/mde-offboard/offboard"
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
	// SubjectPrefix is the prefix of the service's subjects (empty: the
	// default): replies must not come back under it.
	SubjectPrefix string
}

// Check refuses settings that cannot work together, before any
// connection: a URL that does not parse (named without its password: the
// parser's own error quotes it whole), a certificate without its key, an
// inbox prefix that is not subject tokens or falls where replies would be
// taken for messages (the service's subjects, JetStream's).
func (c Conn) Check() error {
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("--tlscert and --tlskey go together")
	}
	for _, u := range servers(c.URL) {
		if strings.Contains(u, ",") {
			return fmt.Errorf("NATS URL %s has a ',' in its user or password, which splits the server list: write it %%2C", RedactURLs(u))
		}
		s := u
		if !strings.Contains(s, "://") {
			s = "nats://" + s
		}
		if _, err := url.Parse(s); u != "" && err != nil {
			return fmt.Errorf("NATS URL %s is not a URL: want nats://host:port (or host:port), a user and password escaped", RedactURLs(u))
		}
	}
	p := c.InboxPrefix
	if p == "" {
		return nil
	}
	if err := offboard.CheckTokens(p); err != nil {
		return fmt.Errorf("--nats-inbox-prefix %q: %w; want tokens separated by '.', such as _INBOX_<user>", p, err)
	}
	for _, taken := range []string{cmp.Or(c.SubjectPrefix, offboard.DefaultPrefix), "$JS", "$KV", "$O", "$SYS"} {
		if p == taken || strings.HasPrefix(p, taken+".") {
			return fmt.Errorf("--nats-inbox-prefix %q is under %s, where replies would be taken for messages; use one such as _INBOX_<user>", p, taken)
		}
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
	parts := servers(urls)
	for i, p := range parts {
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

// servers splits a comma-separated server list, trimmed, keeping a ',' in
// a user or password with its URL ("nats://alice:pa,ss@host": the piece
// after the comma names no scheme and holds the '@'), so that it is never
// shown as a URL of its own.
func servers(urls string) []string {
	var out []string
	for _, p := range strings.Split(urls, ",") {
		p = strings.TrimSpace(p)
		if n := len(out); n > 0 && !strings.Contains(p, "://") && strings.Contains(p, "@") && cutUserInfo(out[n-1]) {
			out[n-1] += "," + p
			continue
		}
		out = append(out, p)
	}
	return out
}

// cutUserInfo says whether a piece of a server list is the start of a
// URL whose user or password a ',' cut: no '@' yet, and after its last
// ':' (past the scheme) no port but a password's start ("alice:pa" of
// "nats://alice:pa,ss@host"). A password cut after digits alone looks
// like a port, and is not told.
func cutUserInfo(piece string) bool {
	if strings.Contains(piece, "@") {
		return false
	}
	_, rest, found := strings.Cut(piece, "://")
	if !found {
		rest = piece
	}
	i := strings.LastIndex(rest, ":")
	return i >= 0 && strings.Trim(rest[i+1:], "0123456789") != ""
}

// CheckReplies makes sure the connection may read its own replies: it
// subscribes to an inbox of its prefix and waits for the server's word on
// it. A user whose permissions leave its inbox out (another user's
// --nats-inbox-prefix, or none where the account wants one) would
// otherwise see every request time out, with nothing to say why.
func CheckReplies(nc *nats.Conn, timeout time.Duration) error {
	sub, err := nc.SubscribeSync(nc.NewInbox())
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.FlushTimeout(timeout); err != nil {
		return nil //nolint:nilerr // no word from the server: the requests will tell
	}
	if refused := nc.LastError(); errors.Is(refused, nats.ErrPermissionViolation) {
		return fmt.Errorf("NATS refused this user its replies (%w): check --nats-inbox-prefix and the user's permissions", refused)
	}
	return nil
}
