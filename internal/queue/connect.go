package queue

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

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
	if err := c.checkFiles(); err != nil {
		return err
	}
	// White space or commas alone (a Secret's value that was a line end)
	// are no empty setting, which would mean the default server (or the
	// worker's embedded one), yet name no server: the connection failed
	// with "no servers available", as if a server were down. Blank
	// items are dropped as the client library drops them.
	if c.URL != "" && !slices.ContainsFunc(strings.Split(c.URL, ","), func(u string) bool { return strings.TrimSpace(u) != "" }) {
		return errors.New("--nats-url: names no server (white space or commas alone): give nats://host:port")
	}
	var websocket []bool // of each URL
	for _, u := range servers(c.URL) {
		if u != "" {
			scheme, _, found := strings.Cut(u, "://")
			websocket = append(websocket, found && (strings.EqualFold(scheme, "ws") || strings.EqualFold(scheme, "wss")))
		}
		if strings.Contains(u, ",") {
			return fmt.Errorf("NATS URL %s has a ',' in its user or password, which splits the server list (or a URL without its scheme after another): write it %%2C, and nats:// before each URL", RedactURLs(u))
		}
		if strings.ContainsAny(u, otherAtSigns) {
			return fmt.Errorf("NATS URL %s has an at sign of another width (U+FF20 or U+FE6B) where its user or password ends: write '@'", RedactURLs(u))
		}
		s := u
		if !strings.Contains(s, "://") {
			s = "nats://" + s
		}
		pu, err := url.Parse(s)
		if u != "" && err != nil {
			return fmt.Errorf("NATS URL %s is not a URL: want nats://host:port (or host:port), a user and password escaped", RedactURLs(u))
		}
		// An '@' past the host: a '/', '?' or '#' in the user or password
		// ended the authority early, and the rest of it would be dialled
		// (and named in the dial error) as the host.
		if err == nil && strings.Contains(pu.Opaque+pu.Path+pu.RawQuery+pu.Fragment, "@") {
			return fmt.Errorf("NATS URL %s has a '/', '?' or '#' in its user or password: escape it (%%2F, %%3F, %%23)", RedactURLs(u))
		}
		// A port no server can have parses: only the dial failed, told
		// as a server down, not as a URL to mend.
		if port := pu.Port(); err == nil && port != "" {
			if n, perr := strconv.Atoi(port); perr != nil || n < 1 || n > 65535 {
				return fmt.Errorf("NATS URL %s: want a port from 1 to 65535", RedactURLs(u))
			}
		}
	}
	// The client library takes websocket URLs or others, not both: the
	// connection failed at start, as if a server were down.
	if slices.Contains(websocket, true) && slices.Contains(websocket, false) {
		return fmt.Errorf("NATS URLs %s: websocket URLs (ws://, wss://) and others in one list, which the client refuses: give URLs of one kind", RedactURLs(c.URL))
	}
	p := c.InboxPrefix
	if p == "" {
		return nil
	}
	if err := offboard.CheckTokens(p); err != nil {
		// The value is not quoted: a password or a Secret's value given
		// in its place would be shown.
		return fmt.Errorf("--nats-inbox-prefix: %w; want tokens separated by '.', such as _INBOX_<user>", err)
	}
	if taken := Reserved(c.SubjectPrefix, p); taken != "" {
		return fmt.Errorf("--nats-inbox-prefix is under %s, where replies would be taken for messages; use one such as _INBOX_<user>", taken)
	}
	return nil
}

// Reserved is the root that subject falls under among those where a
// message is taken for something other than a reply: the project's
// subjects (prefix, "" for the default) and the server's JetStream,
// KV, object store and system subjects. "" when it is none of them.
func Reserved(prefix, subject string) string {
	for _, taken := range []string{cmp.Or(prefix, offboard.DefaultPrefix), "$JS", "$KV", "$O", "$SYS"} {
		if subject == taken || strings.HasPrefix(subject, taken+".") {
			return taken
		}
	}
	return ""
}

// checkFiles makes sure each file setting names a file. Its error names
// the setting and the reason, not the path: the client library's own
// error quotes the path whole, and a credentials file's or a key's
// content given in its place (a variable set from a secret's value
// instead of a mounted file) would be shown, nkey seed and all.
func (c Conn) checkFiles() error {
	for _, f := range []struct{ flag, path string }{
		{"--nats-creds", credsPath(c.Creds)}, {"--tlsca", c.TLSCA}, {"--tlscert", c.TLSCert}, {"--tlskey", c.TLSKey},
	} {
		if f.path == "" {
			continue
		}
		if err := readable(f.path); err != nil {
			return fmt.Errorf("%s: %w", f.flag, err)
		}
	}
	if c.Creds != "" {
		if err := checkCreds(credsPath(c.Creds)); err != nil {
			return fmt.Errorf("--nats-creds: %w", err)
		}
	}
	return c.checkTLSFiles()
}

// maxTLSFile bounds how much of a CA bundle or a client certificate or
// key file the check reads: a bundle of every public root is about
// 200 KiB.
const maxTLSFile = 4 << 20

// checkTLSFiles reads the TLS files as the client library will when it
// connects: the start failed there, exit 1, as if the server were down,
// naming the path, after --check-config had said valid. Only regular
// files are read (readable); the errors say what was not found, never
// what the file holds.
func (c Conn) checkTLSFiles() error {
	if regular(c.TLSCA) {
		b, err := readTLSFile(c.TLSCA)
		if err != nil {
			return fmt.Errorf("--tlsca: %w", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(b) {
			return errors.New("--tlsca: the file it names holds no PEM certificate")
		}
	}
	if !regular(c.TLSCert) || !regular(c.TLSKey) {
		return nil
	}
	certPEM, err := readTLSFile(c.TLSCert)
	if err != nil {
		return fmt.Errorf("--tlscert: %w", err)
	}
	if !holdsCertificate(certPEM) {
		return errors.New("--tlscert: the file it names holds no PEM certificate")
	}
	keyPEM, err := readTLSFile(c.TLSKey)
	if err != nil {
		return fmt.Errorf("--tlskey: %w", err)
	}
	// tls's own error is not shown: it is a library's text.
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return errors.New("--tlskey: the file it names holds no private key of the --tlscert certificate (PEM, unencrypted)")
	}
	return nil
}

// regular says whether path names a regular file: a named pipe or a
// device is left to the client library, whole (readable).
func regular(path string) bool {
	if path == "" {
		return false
	}
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// readTLSFile reads a TLS file of at most maxTLSFile bytes.
func readTLSFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, unread(err)
	}
	defer func() { _ = f.Close() }()
	b, err := io.ReadAll(io.LimitReader(f, maxTLSFile+1))
	switch {
	case err != nil:
		return nil, unread(err)
	case len(b) > maxTLSFile:
		return nil, fmt.Errorf("the file it names is larger than %d MiB: not a certificate or key file", maxTLSFile>>20)
	}
	return b, nil
}

// holdsCertificate says whether b holds a PEM certificate that parses.
func holdsCertificate(b []byte) bool {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return false
		}
		if block.Type == "CERTIFICATE" {
			if _, err := x509.ParseCertificate(block.Bytes); err == nil {
				return true
			}
		}
	}
}

// maxCredsFile bounds how much of a credentials file checkCreds reads:
// nsc writes one of about 1.5 KiB.
const maxCredsFile = 64 << 10

// checkCreds refuses a credentials file whose first block, between
// "-----" lines, is not a user JWT: an nkey seed alone, a JWT and a seed
// without the lines nsc writes around them, another secret. The client
// library sends that block, or the whole file when it finds none, to
// the server as the user's JWT, in the clear before any answer, and the
// server's protocol trace writes it down, seed and all. Only a regular
// file is read (readable); its error says what was found, not what the
// file holds.
func checkCreds(path string) error {
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return nil //nolint:nilerr // readable has said what it could
	}
	f, err := os.Open(path)
	if err != nil {
		return unread(err)
	}
	defer func() { _ = f.Close() }()
	data, err := io.ReadAll(io.LimitReader(f, maxCredsFile+1))
	switch {
	case err != nil:
		return unread(err)
	case len(data) > maxCredsFile:
		return fmt.Errorf("the file it names is larger than %d KiB: not a credentials file", maxCredsFile>>10)
	}
	jwt, err := nkeys.ParseDecoratedJWT(data)
	if err != nil || jwt == string(data) || !jwtShaped(jwt) {
		return errors.New("the file it names holds no user JWT between -----BEGIN NATS USER JWT----- lines: give the credentials file nsc writes (user.creds, the JWT and the nkey seed), not a seed or another secret")
	}
	return nil
}

// jwtShaped says whether s is three base64url parts joined by '.'.
func jwtShaped(s string) bool {
	parts := strings.Split(s, ".")
	return len(parts) == 3 && !slices.ContainsFunc(parts, func(p string) bool {
		return p == "" || strings.ContainsFunc(p, func(r rune) bool {
			return (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '-' && r != '_'
		})
	})
}

// readable says why the file at path cannot be read, as the client
// library would find when it connects: not there, a directory, a socket,
// a device, or a regular file it may not open (another user's). Only a regular
// file is opened, and closed unread: a named pipe's writer would take the
// check's open for the library's, write into a pipe closed unread and
// leave, and the library would then wait for a writer for ever; a device
// may act on an open.
func readable(path string) error {
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return unread(err)
	case fi.IsDir():
		return errors.New("it names a directory: give the file")
	case fi.Mode()&fs.ModeSocket != 0:
		return unread(syscall.ENXIO)
	case fi.Mode()&fs.ModeDevice != 0:
		// Read whole by the library, one that never ends (/dev/zero)
		// grew the start until it ran out of memory.
		return errors.New("it names a device: give the file")
	case !fi.Mode().IsRegular():
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return unread(err)
	}
	_ = f.Close()
	return nil
}

// unread is the error of a file that could not be read, without its path.
func unread(err error) error {
	if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("the file it names could not be read: %w", err)
}

// credsPath is the file the client library opens for a credentials
// file's path: its environment variables expanded, and a leading '~' as
// the home directory.
func credsPath(p string) string {
	p = os.ExpandEnv(p)
	if rest, ok := strings.CutPrefix(p, "~"); ok {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, rest)
		}
	}
	return p
}

// Options are the connection options the settings ask for.
func (c Conn) Options() []nats.Option {
	var o []nats.Option
	if c.Creds != "" {
		o = append(o, checkedCredentials(c.Creds))
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

// checkedCredentials is nats.UserCredentials, with the file checked as
// Check checks it each time the client reads it, at every connection: a
// file replaced meanwhile by one without a user JWT (a Secret rotated
// with the seed alone) would have its seed sent as the JWT.
func checkedCredentials(file string) nats.Option {
	var lib nats.Options
	_ = nats.UserCredentials(file)(&lib) // sets the two callbacks; cannot fail
	userJWT := lib.UserJWT
	return nats.UserJWT(func() (string, error) {
		if err := checkCreds(credsPath(file)); err != nil {
			return "", fmt.Errorf("--nats-creds: %w", err)
		}
		return userJWT()
	}, lib.SignatureCB)
}

// RedactURLs drops the user information of each URL in a comma-separated
// NATS server list, so a message can name the servers without
// credentials, whether a URL has a scheme or not ("alice:pw@host:4222").
// A query or fragment goes too: a websocket URL's query is sent in the
// handshake, where a proxy in front of NATS may read a token from it
// ("wss://host/nats?token=...").
func RedactURLs(urls string) string {
	parts := servers(urls)
	for i, p := range parts {
		scheme, rest, ok := strings.Cut(p, "://")
		if !ok {
			scheme, rest = "", p
		}
		if hasAt(rest) {
			rest = afterLastAt(rest)
		} else {
			rest = withoutWordPort(rest)
		}
		// After the at sign: a '?' or '#' before it is part of a
		// password, which goes with it.
		if end := strings.IndexAny(rest, "?#"); end >= 0 {
			rest = rest[:end]
		}
		if scheme != "" {
			rest = scheme + "://" + rest
		}
		parts[i] = rest
	}
	return strings.Join(parts, ",")
}

// withoutWordPort is a URL's rest after its scheme, with no at sign, as
// "…" when its port is not a number: a user and password whose '@' and
// host were left out ("alice:S3CR3T"), the password read as the port. No
// NATS server listens there. What follows goes too: a '/' in the
// password (base64's) starts what reads as the path.
func withoutWordPort(rest string) string {
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	host := rest[:end]
	i := strings.LastIndex(host, ":")
	if i < 0 || i < strings.LastIndex(host, "]") {
		return rest
	}
	if port := host[i+1:]; strings.Trim(port, "0123456789") != "" {
		return "…"
	}
	return rest
}

// otherAtSigns are the at signs a hand or an input method may write in
// place of '@' (the fullwidth and the small commercial at, which read as
// '@' once normalised, NFKC): Check refuses them, and where one stands
// it ends a user or password as '@' does, never shown.
const otherAtSigns = "\uff20\ufe6b"

// hasAt says whether s holds '@' or an at sign of another width.
func hasAt(s string) bool {
	return strings.ContainsAny(s, "@"+otherAtSigns)
}

// afterLastAt is s after its last at sign ('@' or otherAtSigns); s if it
// has none.
func afterLastAt(s string) string {
	if i := strings.LastIndexAny(s, "@"+otherAtSigns); i >= 0 {
		_, size := utf8.DecodeRuneInString(s[i:])
		return s[i+size:]
	}
	return s
}

// servers splits a comma-separated server list, trimmed. A piece with an
// '@' (or an at sign of another width) and no scheme is joined back to
// the pieces before it that have none, up to one with a scheme: a ',' in
// a user, password or token
// ("nats://alice:pa,s,s@host", "nats://tok,en@host", "nats://alice:4222,x@host")
// cannot be told from a list whose later URL has no scheme, so such a
// list is kept whole, for Check to refuse, and never shown but from its
// last '@'.
func servers(urls string) []string {
	var out []string
	for _, p := range strings.Split(urls, ",") {
		p = strings.TrimSpace(p)
		if !strings.Contains(p, "://") && hasAt(p) {
			j := len(out)
			for j > 0 && !hasAt(out[j-1]) {
				j--
				if strings.Contains(out[j], "://") {
					break
				}
			}
			if j < len(out) {
				p = strings.Join(append(out[j:len(out):len(out)], p), ",")
				out = out[:j]
			}
		}
		out = append(out, p)
	}
	return out
}

// Refusal adds to err a permission NATS refused the connection meanwhile
// (a subscription to an inbox the user may not read, a publish it may not
// make), which the failing step itself saw only as a timeout; refused
// says whether there was one.
func Refusal(nc *nats.Conn, err error) (refused bool, explained error) {
	if nc == nil || err == nil {
		return false, err
	}
	if last := nc.LastError(); errors.Is(last, nats.ErrPermissionViolation) {
		return true, fmt.Errorf("%w; NATS refused this user: %w (check its permissions and --nats-inbox-prefix)", err, last)
	}
	return false, err
}

// refusedPublishes holds, by connection, the subjects NATS refused it a
// publish on (NoteRefusal): a set of strings, one per subject.
var refusedPublishes sync.Map // *nats.Conn → *sync.Map

// NoteRefusal is a connection's nats.ErrorHandler: it remembers the subject of
// each publish NATS refused it for a permission. The connection's last
// error alone, where the refusal is told too, is replaced by the next
// refusal of another subject (a read of another bucket the user may not
// make): by the time a refused publish times out, seconds later, it may
// name another subject.
func NoteRefusal(nc *nats.Conn, _ *nats.Subscription, err error) {
	const at = `Publish to "`
	if nc == nil || !errors.Is(err, nats.ErrPermissionViolation) {
		return
	}
	msg := err.Error()
	i := strings.Index(msg, at)
	if i < 0 {
		return
	}
	subject, _, ok := strings.Cut(msg[i+len(at):], `"`)
	if !ok {
		return
	}
	set, _ := refusedPublishes.LoadOrStore(nc, &sync.Map{})
	set.(*sync.Map).Store(subject, struct{}{})
}

// ForgetRefusals drops what NoteRefusal remembers of nc, once closed.
func ForgetRefusals(nc *nats.Conn) { refusedPublishes.Delete(nc) }

// PublishRefused says whether NATS refused nc a publish on subject (a
// user without the permission): that publish times out with no answer,
// as one whose answer was lost does, but was not stored. Told by
// NoteRefusal when it is nc's error handler, else by nc's last error.
func PublishRefused(nc *nats.Conn, subject string) bool {
	if nc == nil {
		return false
	}
	if set, ok := refusedPublishes.Load(nc); ok {
		if _, ok := set.(*sync.Map).Load(subject); ok {
			return true
		}
	}
	last := nc.LastError()
	return errors.Is(last, nats.ErrPermissionViolation) && strings.Contains(last.Error(), `"`+subject+`"`)
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

// NoTLSHint explains a connection refused because the server offers no
// TLS while the TLS settings, or the URL's tls:// scheme alone, ask for
// it ("nats: secure connection not available" named neither side); empty
// for any other error. Without a TLS setting the flags are not named: a
// tls:// URL was told to leave out flags it was never given.
func (c Conn) NoTLSHint(err error) string {
	if !errors.Is(err, nats.ErrSecureConnWanted) {
		return ""
	}
	if c.TLSCA == "" && c.TLSCert == "" && c.TLSKey == "" {
		return " (the server offers no TLS, which the URL's tls:// scheme asks for: give the URL of the server with TLS, or nats:// for one without)"
	}
	return " (the server offers no TLS, which --tlsca, --tlscert and --tlskey ask for: give the URL of the server with TLS, or leave them out)"
}
