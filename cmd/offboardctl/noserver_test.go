package main

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/internal/testcert"
)

// TestNoNATSServerSaysWhatToCheck: a URL where nothing listens is
// answered in one line, exit 1, that says what to check: the worker (its
// embedded server) when the URL is the default, the server and
// --nats-url, named with the variable that set it, otherwise. Before,
// "nats: no servers available for connection" alone, on a first run
// whose worker was not started yet.
func TestNoNATSServerSaysWhatToCheck(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "nats://" + l.Addr().String()
	_ = l.Close() // nothing listens there now
	t.Setenv("MDE_OFFBOARD_NATS_URL", url)
	var out, errb bytes.Buffer
	code := run([]string{"--connect-timeout", "1s", "status"}, &out, &errb)
	if code != exitFailed || strings.Count(errb.String(), "\n") != 1 ||
		!strings.Contains(errb.String(), "no NATS server answers there: is it running, and is --nats-url (from MDE_OFFBOARD_NATS_URL) the worker's?") {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
	// The default URL: whether something listens on 4222 here is not
	// the test's to choose, so the hint is asked for directly.
	c := &cli{}
	c.conn.URL = nats.DefaultURL
	if hint := c.noServerHint(nats.ErrNoServers, false); !strings.Contains(hint, "is the worker running? its embedded server listens there") ||
		!strings.Contains(hint, "give its URL as --nats-url") {
		t.Errorf("hint for the default URL: %q", hint)
	}
	if hint := c.noServerHint(nats.ErrAuthorization, false); hint != "" {
		t.Errorf("hint for a refused user: %q", hint)
	}
}

// TestNATSWithoutTLSSaysSo: TLS settings given for a server without TLS
// are named, exit 1, in one line. Before, "nats: secure connection not
// available" alone.
func TestNATSWithoutTLSSaysSo(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
	url := js.Conn().ConnectedUrl()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	_, certPEM := testcert.Write(t, filepath.Join(t.TempDir(), "cert.pem"), "nats")
	if err := os.WriteFile(ca, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := run([]string{"--nats-url", url, "--tlsca", ca, "status"}, &out, &errb)
	if code != exitFailed || strings.Count(errb.String(), "\n") != 1 ||
		!strings.Contains(errb.String(), "the server offers no TLS, which --tlsca, --tlscert and --tlskey ask for") {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
}

// TestTLSURLWithoutTLSNamesTheScheme: a tls:// URL, no TLS flag given,
// for a server without TLS is answered in one line, exit 1, naming the
// scheme, not the flags. Before, the line asked to leave out --tlsca,
// --tlscert and --tlskey, none of them given.
func TestTLSURLWithoutTLSNamesTheScheme(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t)
	url := strings.Replace(js.Conn().ConnectedUrl(), "nats://", "tls://", 1)
	var out, errb bytes.Buffer
	code := run([]string{"--nats-url", url, "status"}, &out, &errb)
	if code != exitFailed || strings.Count(errb.String(), "\n") != 1 ||
		!strings.Contains(errb.String(), "the server offers no TLS, which the URL's tls:// scheme asks for") ||
		strings.Contains(errb.String(), "--tls") {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
}

// TestRefusedAndAbsentServersAreToldApart: of two URLs, one a server that
// refuses the password and one where nothing listens, the line does not
// say that no server answers: nats.go told "no servers available" alone
// when it tried the absent one last, and the hint sent the operator
// looking for a server that runs. The password is not shown.
func TestRefusedAndAbsentServersAreToldApart(t *testing.T) {
	t.Parallel()
	url := natstest.StartWithUsers(t, &server.User{Username: "alice", Password: "right"})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	absent := "nats://" + l.Addr().String()
	_ = l.Close()
	// Both orders: the client tries the URLs in a random order unless
	// told otherwise, and the refusal told last was named as it is.
	for _, urls := range []string{
		strings.Replace(url, "nats://", "nats://alice:s3cretpw@", 1) + "," + absent,
		absent + "," + strings.Replace(url, "nats://", "nats://alice:s3cretpw@", 1),
	} {
		for range 3 {
			var out, errb bytes.Buffer
			code := run([]string{"--connect-timeout", "2s", "--nats-url", urls, "status"}, &out, &errb)
			e := errb.String()
			if code != exitFailed || strings.Count(e, "\n") != 1 || strings.Contains(e, "s3cretpw") ||
				strings.Contains(e, "no NATS server answers there") ||
				!(strings.Contains(e, "Authorization Violation") || strings.Contains(e, "a server of the list took the connection, then refused it")) {
				t.Errorf("exit %d, stderr %q", code, e)
			}
		}
	}
}
