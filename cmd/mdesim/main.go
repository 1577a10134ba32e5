package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"net"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/buildinfo"

	"github.com/google/uuid"

	"github.com/contoso-secops/mde-offboard/internal/mde"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
)

func main() { os.Exit(run()) }

type config struct {
	listen, tenantID, clientID, secret, secretFile, limits, caOut string
	fixtures                                                      *mdesim.Fixtures
	loginFault                                                    mdesim.LoginFault
	machines, offboardStatus                                      int
	failRate, spurious404Rate, lostAnswerRate                     float64
	latency, completeAfter, tokenLifetime                         time.Duration
	duplicateReturnsExisting, http2, verbose, version             bool
	// The documented answers where the default is the one seen from
	// the service (mdesim.Options).
	emptyMachineListNotFound, offboardAnyPlatform, nullActionMachineFields bool
}

// fixturesFlag reads --fixtures into c. The path is not quoted: a secret
// given in its place would be shown.
func fixturesFlag(fs *flag.FlagSet, c *config) func(string) error {
	return func(v string) error {
		if name, ok := flagGiven(fs, v); ok {
			return flagAsValue(name)
		}
		b, err := os.ReadFile(v)
		if pe := (*iofs.PathError)(nil); errors.As(err, &pe) {
			err = pe.Err
		}
		if err != nil {
			return fmt.Errorf("the file it names could not be read: %w", err)
		}
		if len(bytes.TrimSpace(b)) == 0 {
			// YAML's own word for it was "EOF".
			return errors.New("the file it names is empty: give tenants, such as tenants: [{tenantId: ..., machines: [{computerDnsName: pc-1.contoso.local}]}]")
		}
		c.fixtures, err = mdesim.ParseFixtures(b)
		if err != nil {
			// YAML's errors and the fixtures' own come one a line.
			return errors.New(strings.ReplaceAll(err.Error(), "\n", "; "))
		}
		return nil
	}
}

// parseFlags reads the flags; --help prints the usage on stderr. A bad
// flag is only an error: run makes it one line.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("mdesim", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.listen, "listen", "127.0.0.1:8443", "`address` to listen on")
	fs.StringVar(&c.tenantID, "tenant-id", "", "tenant `GUID` (default: random)")
	fs.StringVar(&c.clientID, "client-id", "", "application (client) `GUID` (default: random)")
	fs.StringVar(&c.secret, "client-secret", "", "accepted client `secret` (default: random, printed)")
	fs.StringVar(&c.secretFile, "client-secret-file", "", "read the client secret from `file`")
	fs.IntVar(&c.machines, "machines", 10, "generate `N` Windows machines pc-0001.contoso.local...")
	fs.StringVar(&c.limits, "limits", "", "rate limits, e.g. `offboard=100/1m,1500/1h;machines=100/1m`; empty: 100/1m and 1500/1h for all APIs; \"none\": no limits; unnamed APIs keep the defaults")
	fs.StringVar(&c.caOut, "ca-out", "", "write the server certificate (PEM) to `file`")
	fs.Float64Var(&c.failRate, "fail-rate", 0, "probability of a 500 on API calls")
	fs.Float64Var(&c.spurious404Rate, "spurious-404-rate", 0, "probability of a 404 for an existing machine")
	fs.Float64Var(&c.lostAnswerRate, "lost-answer-rate", 0, "probability that an offboard takes effect but answers 504")
	fs.Func("login-fault", "token endpoint `fault`: garbled (200 with a token MSAL cannot decode), refused-long-body (401 with a 100 KiB body), huge-body (401 with a 32 MiB body) or broken-token (200 with a token holding a line break)", func(v string) error {
		f, err := mdesim.ParseLoginFault(v)
		c.loginFault = f
		return err
	})
	fs.Func("fixtures", "add the tenants and devices of `file` (YAML or JSON; see mdesim.Fixtures); a tenant without clientId or clientSecret gets the flags' ones", fixturesFlag(fs, &c))
	fs.DurationVar(&c.latency, "latency", 0, "latency added to every API answer")
	fs.DurationVar(&c.completeAfter, "action-complete-after", 0, "offboard actions read as Succeeded after this `duration` (0: Pending forever)")
	fs.DurationVar(&c.tokenLifetime, "token-lifetime", time.Hour, "access token lifetime")
	fs.BoolVar(&c.duplicateReturnsExisting, "duplicate-returns-existing", false, "answer a duplicate offboard with 201 and the pending action instead of 400")
	fs.IntVar(&c.offboardStatus, "offboard-status", 201, "`status` of an offboard that creates its action: 201, as the service has been seen to answer, or 200, as its documentation says")
	fs.BoolVar(&c.emptyMachineListNotFound, "empty-machine-list-not-found", false, "answer a list of no device 404, as the List machines API documents, instead of 200 with an empty list")
	fs.BoolVar(&c.offboardAnyPlatform, "offboard-any-platform", false, "offboard macOS and Linux devices too, as a newer version of the documentation says, instead of 400 OsPlatformNotSupported")
	fs.BoolVar(&c.nullActionMachineFields, "null-action-machine-fields", false, "answer an offboard with null machineId and computerDnsName, as the service has been seen to")
	fs.BoolVar(&c.http2, "http2", false, "offer HTTP/2 beside HTTP/1.1")
	fs.BoolVar(&c.verbose, "v", false, "log every API call")
	fs.BoolVar(&c.version, "version", false, "print the version and exit")
	if err := parse(fs, args, stderr); err != nil {
		return c, err
	}
	// A flag that lost its value (a variable not set) takes the next
	// flag as its value, and leaves that flag's value as an argument:
	// neither is quoted, as either may be the client secret.
	for _, name := range []string{"listen", "tenant-id", "client-id", "client-secret", "client-secret-file", "limits", "ca-out"} {
		if given, ok := flagGiven(fs, fs.Lookup(name).Value.String()); ok {
			return c, fmt.Errorf("--%s: %w", name, flagAsValue(given))
		}
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("%d argument(s) after the flags, not shown: mdesim takes flags only (a flag before them without its value, or a value with a space not quoted?)", fs.NArg())
	}
	err := c.check() // before c is returned: it sets the secret
	return c, err
}

// check reads the values that parse only as a whole, here and not when
// the server starts: a value that does not parse is bad usage (exit 2),
// not a failure to serve. It reads the client secret file.
func (c *config) check() error {
	if _, err := mdesim.ParseLimits(c.limits); err != nil {
		return fmt.Errorf("--limits: %w", err)
	}
	_, port, err := net.SplitHostPort(c.listen)
	if err != nil {
		// The address is not quoted, as the worker's --listen.
		return errors.New("--listen: want host:port, such as 127.0.0.1:8443")
	}
	// A port out of range failed only at the listen, exit 1, as if
	// it were taken.
	if _, err := strconv.ParseUint(port, 10, 16); err != nil && port != "" {
		return errors.New("--listen: want host:port with a port number from 0 to 65535, such as 127.0.0.1:8443")
	}
	if c.machines < 0 || c.machines > mdesim.MaxDevices {
		return fmt.Errorf("--machines %d: must be between 0 and %d", c.machines, mdesim.MaxDevices)
	}
	if err := c.checkIDs(); err != nil {
		return err
	}
	for _, r := range []struct {
		name string
		v    float64
	}{{"fail-rate", c.failRate}, {"spurious-404-rate", c.spurious404Rate}, {"lost-answer-rate", c.lostAnswerRate}} {
		if !(r.v >= 0 && r.v <= 1) { // NaN too
			return fmt.Errorf("--%s %v: want a probability from 0 to 1", r.name, r.v)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"latency", c.latency}, {"action-complete-after", c.completeAfter}} {
		if d.v < 0 {
			return fmt.Errorf("--%s %v: must not be negative", d.name, d.v)
		}
	}
	if c.offboardStatus != http.StatusOK && c.offboardStatus != http.StatusCreated {
		return fmt.Errorf("--offboard-status %d: want 200 or 201", c.offboardStatus)
	}
	if c.tokenLifetime <= 0 {
		return fmt.Errorf("--token-lifetime %v: must be positive", c.tokenLifetime)
	}
	if c.secret != "" && c.secretFile != "" {
		return errors.New("--client-secret and --client-secret-file are exclusive")
	}
	if c.secretFile != "" {
		// Read as the worker reads its secret files: the errors name the
		// flag, not the path, which may be the secret itself, and a byte
		// order mark is no part of the secret, which the worker sends
		// without it.
		secret, err := mde.ReadSecretFile("--client-secret-file", c.secretFile)
		if err != nil {
			return err
		}
		c.secret = secret
	}
	return nil
}

// checkIDs refuses a --tenant-id or --client-id that is no GUID, as the
// worker's tenants file does. The value is not quoted: a secret given to
// the wrong flag would be shown.
func (c *config) checkIDs() error {
	for _, id := range []struct{ name, v string }{{"tenant-id", c.tenantID}, {"client-id", c.clientID}} {
		if id.v != "" && !guid.MatchString(id.v) {
			return fmt.Errorf("--%s: want a GUID, such as 11111111-2222-3333-4444-555555555555", id.name)
		}
	}
	return nil
}

// guid is the form of a tenant or client id the worker's tenants file
// takes.
var guid = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// flagGiven says whether v, a flag's value, is one of fs's flags
// ("--name" or "--name=value"), and gives its name: the flag before it
// lost its value.
func flagGiven(fs *flag.FlagSet, v string) (string, bool) {
	if !strings.HasPrefix(v, "-") {
		return "", false
	}
	name, _, _ := strings.Cut(strings.TrimLeft(v, "-"), "=")
	return name, name != "" && fs.Lookup(name) != nil
}

// flagAsValue is the error of a flag whose value is the flag name, named
// alone: its value may be a secret.
func flagAsValue(name string) error {
	return fmt.Errorf("its value is the flag --%s: give the value before it (a variable not set?)", name)
}

// parse parses args into fs, whose output is discarded; on --help it
// prints the usage on stderr.
func parse(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(stderr, "Usage of mdesim:")
		fs.SetOutput(stderr)
		fs.PrintDefaults()
	}
	if err != nil {
		if m := unreadFlagValue.FindStringSubmatch(err.Error()); m != nil {
			return flagValueError(fs, m[1], m[2])
		}
	}
	return err
}

// unreadFlagValue is the flag package's error for a value that does not
// read: the flag's name and the reason.
var unreadFlagValue = regexp.MustCompile(`^invalid (?:boolean )?value "(?:[^"\\]|\\.)*" for (?:flag )?-([A-Za-z0-9-]+): (.*)$`)

// flagValueError names the flag and says what it takes, without the
// value (a secret given to the wrong flag would be shown): the flag
// package's "parse error" left the form to guess. A flag of its own kind
// (a fixtures file, a login fault) keeps the reason it gave.
func flagValueError(fs *flag.FlagSet, name, reason string) error {
	takes := ""
	if f := fs.Lookup(name); f != nil {
		if g, ok := f.Value.(flag.Getter); ok {
			switch g.Get().(type) {
			case time.Duration:
				takes = "a duration, such as 30s, 5m or 2h"
			case int:
				takes = "a whole number"
			case float64:
				takes = "a number, such as 0.05"
			case bool:
				takes = "true or false"
			}
		}
	}
	if takes == "" {
		return fmt.Errorf("--%s: %s", name, reason)
	}
	return fmt.Errorf("--%s: the value given does not read as %s", name, takes)
}

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	c, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mdesim:", err)
		return 2
	}
	if c.version {
		fmt.Println("mdesim", version())
		return 0
	}
	if err := serve(ctx, c); err != nil {
		fmt.Fprintln(os.Stderr, "mdesim:", err)
		return 1
	}
	return 0
}

func serve(ctx context.Context, c config) error {
	generatedSecret := c.secret == ""
	s, err := newServer(&c)
	if err != nil {
		return err
	}

	host, _, err := net.SplitHostPort(c.listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if host != "" && host != "0.0.0.0" && host != "::" {
		hosts = append(hosts, host)
	} else if name, err := os.Hostname(); err == nil {
		hosts = append(hosts, name)
	}
	cert, err := mdesim.NewSelfSignedCert(hosts...)
	if err != nil {
		return err
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", c.listen)
	if err != nil {
		return err
	}
	base := s.StartTLSListener(ln, &cert)
	defer s.Close()
	if c.caOut != "" {
		if err := os.WriteFile(c.caOut, s.CertPEM(), 0o644); err != nil { //nolint:gosec // a certificate is public

			return fmt.Errorf("--ca-out: %w", err)
		}
	}
	printInfo(os.Stdout, c, base, generatedSecret)
	<-ctx.Done()
	return nil
}

// newServer makes the simulator with one tenant and its machines, filling
// in the random ids and secret c leaves empty.
func newServer(c *config) (*mdesim.Server, error) {
	limits, err := mdesim.ParseLimits(c.limits)
	if err != nil {
		return nil, err
	}
	if c.secret == "" {
		b := make([]byte, 24)
		rand.Read(b)
		c.secret = base64.RawURLEncoding.EncodeToString(b)
	}
	if c.tenantID == "" {
		c.tenantID = uuid.NewString()
	}
	if c.clientID == "" {
		c.clientID = uuid.NewString()
	}

	opts := mdesim.Options{
		Limits:                   limits,
		TokenLifetime:            c.tokenLifetime,
		ActionCompleteAfter:      c.completeAfter,
		DuplicateReturnsExisting: c.duplicateReturnsExisting,
		OffboardStatus:           c.offboardStatus,
		EmptyMachineListNotFound: c.emptyMachineListNotFound,
		OffboardAnyPlatform:      c.offboardAnyPlatform,
		NullActionMachineFields:  c.nullActionMachineFields,
		Latency:                  c.latency,
		FailRate:                 c.failRate,
		Spurious404Rate:          c.spurious404Rate,
		LostAnswerRate:           c.lostAnswerRate,
		LoginFault:               c.loginFault,
		HTTP2:                    c.http2,
	}
	if c.verbose {
		opts.OnCall = func(call mdesim.Call) {
			fmt.Fprintf(os.Stderr, "%s %s %s -> %d %s\n", call.At.Format(time.RFC3339Nano), call.Method, call.Path, call.Status, call.ActionID)
		}
	}
	s := mdesim.New(opts)
	s.AddTenant(mdesim.Tenant{TenantID: c.tenantID, ClientID: c.clientID, ClientSecret: c.secret})
	platforms := []string{"Windows11", "Windows10", "WindowsServer2019", "WindowsServer2022"}
	for i := range c.machines {
		s.AddMachine(c.tenantID, mdesim.Machine{
			ID:              mdesim.NewMachineID(),
			ComputerDNSName: fmt.Sprintf("pc-%04d.contoso.local", i+1),
			OSPlatform:      platforms[i%len(platforms)],
		})
	}
	if c.fixtures != nil {
		for i := range c.fixtures.Tenants {
			ft := &c.fixtures.Tenants[i]
			if ft.ClientID == "" {
				ft.ClientID = c.clientID
			}
			if ft.ClientSecret == "" {
				ft.ClientSecret = c.secret
			}
		}
		s.AddFixtures(c.fixtures)
	}
	return s, nil
}

func printInfo(w io.Writer, c config, base string, generatedSecret bool) {
	fmt.Fprintf(w, "base URL:      %s\n", base)
	fmt.Fprintf(w, "tenant id:     %s\n", c.tenantID)
	fmt.Fprintf(w, "client id:     %s\n", c.clientID)
	if generatedSecret {
		fmt.Fprintf(w, "client secret: %s (generated)\n", c.secret)
	}
	fmt.Fprintf(w, "scope:         %s\n", mdesim.ScopeSecurityCenter)
	fmt.Fprintf(w, "machines:      %d\n", c.machines)
	if c.fixtures != nil {
		for _, ft := range c.fixtures.Tenants {
			// The devices listed and those generated: both are served.
			fmt.Fprintf(w, "fixture:       tenant %s, client %s, %d machines\n", ft.TenantID, ft.ClientID, len(ft.Machines)+ft.Generate)
		}
	}
	if c.caOut != "" {
		fmt.Fprintf(w, "certificate:   %s\n", c.caOut)
	}
	if c.loginFault != mdesim.LoginNormal {
		fmt.Fprintf(w, "login fault:   %s\n", c.loginFault)
	}
}

// version is the module version and VCS revision the binary was built from.
func version() string { return buildinfo.Read().String() }
