package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/buildinfo"

	"github.com/peterbourgon/ff/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/contoso-secops/mde-offboard/internal/app"
	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// run is the command: flags and environment into options, signals into a
// context, one call into the app. Errors are one line on stderr (in the
// log format chosen), never a stack trace. Exit status 2: bad flags or
// configuration; 1: the start or the stop failed, or the NATS
// connection was closed for good (credentials refused); 0 after SIGTERM,
// SIGINT or SIGHUP, also one that came while it started, or that cancelled requests
// still under way at --shutdown-timeout or at a second signal (they go
// back to the stream).
func run(args []string, stdout, stderr io.Writer) int {
	c, err := parseFlags(args, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case err != nil:
		// A value refused may be a variable's the operator did not
		// give, under its old name (LOG_LEVEL) or misspelt: name them
		// (but a tenant's secret's, if its file reads).
		c.printEnvWarnings(stderr, c.tenantsFile())
		fmt.Fprintln(stderr, "worker:", err)
		return 2
	case c.version:
		fmt.Fprintln(stdout, "worker", version())
		return 0
	case c.checkConfig:
		return c.runCheckConfig(stdout, stderr)
	}
	log, err := newLogger(c.logLevel, c.logFormat, stderr)
	if err != nil {
		c.printEnvWarnings(stderr, c.tenantsFile())
		fmt.Fprintln(stderr, "worker:", err)
		return 2
	}
	defer func() { _ = log.Sync() }()
	o := c.o
	// Caught before the tenants file is read and the tenants' clients
	// built (a tenth of a second at 1000 tenants): a signal meanwhile
	// would kill the process, exit status 143, not stop it.
	sig := catchSignals(log)
	defer sig.release()
	a := c.newApp(log)
	if a == nil {
		return 2
	}
	if sig.stop.Err() != nil {
		log.Info("stopped before the start was over", zap.NamedError("cause", context.Cause(sig.stop)))
		return 0
	}
	if err := a.Start(sig.stop); err != nil {
		return failedStart(sig, a, log, err)
	}
	code := 0
	select {
	case <-sig.stop.Done():
		log.Info("stopping: finishing requests under way", zap.Duration("timeout", o.ShutdownTimeout),
			zap.NamedError("cause", context.Cause(sig.stop)))
	case <-a.Gone():
		// Nothing makes the connection again but a restart, which reads
		// the credentials anew: exit 1, for the service manager to
		// restart the worker (Kubernetes, systemd's Restart=on-failure),
		// rather than serve nothing until a liveness probe notices.
		log.Error("stopping: the NATS connection was closed for good; a restart connects anew", zap.Error(a.GoneError()))
		code = 1
	}
	// A second signal ends the wait for requests under way as the
	// timeout does; Stop has its own time cap.
	if err := a.Stop(sig.hurry); err != nil {
		log.Error("stop", zap.Error(err))
		return 1
	}
	log.Info("stopped")
	return code
}

// runCheckConfig is --check-config: the log settings, the variables
// that set no flag and those read under their old names (a warning on
// stderr each, as at the worker's start), the tenants file.
func (c cli) runCheckConfig(stdout, stderr io.Writer) int {
	f, err := config.Load(c.o.ConfigPath)
	c.printEnvWarnings(stderr, f)
	if _, err := newLogger(c.logLevel, c.logFormat, io.Discard); err != nil {
		fmt.Fprintln(stderr, "worker:", err)
		return 2
	}
	return checkConfig(c.o, f, err, !c.skipFileChecks, stdout, stderr)
}

// printEnvWarnings writes warnEnv's warnings on stderr, one line each,
// for --check-config and for a start refused before there is a log; f
// is the tenants file, nil when it was not read.
func (c cli) printEnvWarnings(stderr io.Writer, f *config.File) {
	for _, name := range c.misspelt(f) {
		fmt.Fprintf(stderr, "worker: warning: environment variable %s sets no flag: is it misspelt?\n", name)
	}
	for _, old := range c.oldEnv {
		fmt.Fprintf(stderr, "worker: warning: environment variable %s without the MDE_OFFBOARD_ prefix: rename it %s\n", old, envPrefix+old)
	}
}

// tenantsFile is the tenants file, nil when it does not read.
func (c cli) tenantsFile() *config.File {
	f, err := config.Load(c.o.ConfigPath)
	if err != nil {
		return nil
	}
	return f
}

// misspelt are the MDE_OFFBOARD_ variables that set no flag, but for
// those a tenant of f (nil: none read) names as its clientSecretEnv,
// which may carry the prefix too.
func (c cli) misspelt(f *config.File) []string {
	if f == nil {
		return c.unknownEnv
	}
	secrets := map[string]bool{}
	for _, t := range f.Tenants {
		secrets[t.ClientSecretEnv] = true
	}
	return slices.DeleteFunc(slices.Clone(c.unknownEnv), func(name string) bool { return secrets[name] })
}

// newApp reads the tenants file, warns of the environment variables,
// and builds the app; nil after a configuration error, logged. The file
// is read before the warnings: a variable a tenant's clientSecretEnv
// names is no misspelt flag.
func (c cli) newApp(log *zap.Logger) *app.App {
	o := c.o
	o.Logger = log
	f, err := config.Load(o.ConfigPath)
	c.warnEnv(log, f)
	if err == nil {
		o.Tenants = f
		var a *app.App
		if a, err = app.New(o); err == nil {
			return a
		}
	}
	log.Error("configuration", zap.Error(err))
	return nil
}

// warnEnv warns of the environment variables that set no flag (but the
// tenants' secrets of f), and of those read under their old names.
func (c cli) warnEnv(log *zap.Logger, f *config.File) {
	for _, name := range c.misspelt(f) {
		log.Warn("environment variable sets no flag: is it misspelt?", zap.String("variable", name))
	}
	for _, old := range c.oldEnv {
		log.Warn("environment variable without the MDE_OFFBOARD_ prefix: rename it",
			zap.String("variable", old), zap.String("use", envPrefix+old))
	}
}

// failedStart reports a start that failed and gives the exit status: 0
// when a signal cut it short (a pod deleted while it waits for NATS) and
// what was up stopped cleanly, else 1. Start stopped the parts already
// up; Stop says again how that went.
func failedStart(sig signals, a *app.App, log *zap.Logger, err error) int {
	if sig.stop.Err() == nil || !errors.Is(err, context.Canceled) {
		log.Error("start", zap.Error(err))
		return 1
	}
	if err := a.Stop(sig.hurry); err != nil {
		log.Error("stop", zap.Error(err))
		return 1
	}
	log.Info("stopped before the start was over", zap.NamedError("start", err))
	return 0
}

// cli is what the command line and the environment say.
type cli struct {
	o                   app.Options
	logLevel, logFormat string
	version             bool
	checkConfig         bool
	skipFileChecks      bool     // with checkConfig: the files the tenants name are not read
	oldEnv              []string // variables read under their old, unprefixed name
	unknownEnv          []string // MDE_OFFBOARD_ variables that set no flag
}

// envPrefix starts every flag's environment variable: --nats-url is
// MDE_OFFBOARD_NATS_URL.
const envPrefix = "MDE_OFFBOARD_"

// defineFlags declares the worker's flags into c; the defaults are the
// app's.
func defineFlags(fs *flag.FlagSet, c *cli) {
	o := &c.o
	fs.BoolVar(&c.version, "version", false, "print the version and exit")
	fs.BoolVar(&c.checkConfig, "check-config", false, "check the tenants file (--config) and the files it names, and exit: 0 valid, 2 not")
	fs.BoolVar(&c.skipFileChecks, "skip-file-checks", false, "with --check-config: do not read the files the tenants file names (secrets, certificates, tokens, CA bundles), where they are not mounted (a workstation, CI)")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", "json", "json or console")
	fs.DurationVar(&o.ShutdownTimeout, "shutdown-timeout", app.DefaultShutdownTimeout, "how long requests under way may take to finish on SIGTERM; a second signal cancels them at once")
	fs.StringVar(&o.ConfigPath, "config", "worker.yaml", "tenants file")
	fs.StringVar(&o.NATSURL, "nats-url", "", "NATS server URL; empty starts an embedded server with JetStream")
	fs.StringVar(&o.NATSCreds, "nats-creds", "", "NATS credentials file")
	fs.StringVar(&o.NATSTLSCA, "tlsca", "", "CA bundle to trust for the NATS server")
	fs.StringVar(&o.NATSTLSCert, "tlscert", "", "client certificate for NATS (with --tlskey)")
	fs.StringVar(&o.NATSTLSKey, "tlskey", "", "client certificate's key for NATS")
	fs.StringVar(&o.NATSInboxPrefix, "nats-inbox-prefix", "", "subject prefix of the NATS connection's replies instead of _INBOX (one the account lets this user alone subscribe to, such as _INBOX_worker)")
	fs.StringVar(&o.DataDir, "data-dir", app.DefaultDataDir, "embedded NATS server storage")
	fs.StringVar(&o.EmbeddedListen, "embedded-listen", app.DefaultEmbeddedListen, "client address of the embedded NATS server")
	fs.StringVar(&o.SubjectPrefix, "subject-prefix", app.DefaultSubjectPrefix, "prefix of every subject")
	fs.StringVar(&o.Listen, "listen", app.DefaultListen, "address of /metrics, /healthz and /readyz")
	fs.StringVar(&o.ReplicaID, "replica-id", "", "this replica's name among the replicas (a pod's name): restarted under the same name it takes its tenants back at once; empty: host, process id and a random part")
	fs.IntVar(&o.MaxRequests, "max-requests", app.DefaultMaxRequests, "bound on the requests worked on at once over all tenants (each tenant also has its maxInFlight); 0: no bound")
	fs.BoolVar(&o.Profiling, "pprof", false, "serve Go runtime profiles under /debug/pprof/ on --listen")
	fs.BoolVar(&o.NoSetup, "no-setup", false, "do not create or update streams and consumers (use deploy/ definitions)")
	fs.DurationVar(&o.Queue.Duplicates, "duplicate-window", 24*time.Hour, "duplicate window of the request and result streams")
	fs.DurationVar(&o.Queue.ResultsMaxAge, "results-max-age", 0, "how long results are kept (0: forever)")
	fs.DurationVar(&o.Queue.LedgerTTL, "ledger-ttl", 30*24*time.Hour, "how long a completed request id is remembered; more than every tenant's tracking maxAge")
	fs.DurationVar(&o.Queue.AckWait, "ack-wait", time.Minute, "how long a request may go without progress before redelivery")
	fs.IntVar(&o.Queue.Replicas, "stream-replicas", 1, "stream replicas (clustered NATS)")
	fs.DurationVar(&o.QuotaMargin, "quota-margin", app.DefaultQuotaMargin, "added to the call times other replicas wrote in the quota journal, for clock skew")
	fs.DurationVar(&o.Queue.QuotaHistory, "quota-history", 2*time.Hour, "how long the quota journal keeps entries; more than the longest window and 1.5 × the call timeout (or an hour, a 429's longest pause), and the margin")
	fs.DurationVar(&o.Queue.BudgetHistory, "budget-history", queue.DefaultBudgetHistory, "how long the budget journal keeps entries; more than the longest budget + 2h (the reservation lease) + the margin")
	fs.DurationVar(&o.CallTimeout, "call-timeout", 30*time.Second, "bound of one API call, its token included")
}

// parseFlags reads the flags and their environment variables into the
// app's options; the defaults are the app's.
func parseFlags(args []string, stderr io.Writer) (c cli, err error) {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	// A bad flag is run's one line, not the flag package's line and the
	// whole usage; --help prints the usage below.
	fs.SetOutput(io.Discard)
	defineFlags(fs, &c)
	if err := ff.Parse(fs, args, ff.WithEnvVarPrefix(strings.TrimSuffix(envPrefix, "_"))); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "Usage of worker:")
			fs.SetOutput(stderr)
			fs.PrintDefaults()
			// The flags' variables, which the list above does not show.
			fmt.Fprintln(stderr, "\nEvery flag can also be set by an environment variable: "+envPrefix+" and the flag's name in\n"+
				"upper case with - as _ (--nats-url: "+envPrefix+"NATS_URL), or, when that one is not set, the name\n"+
				"without the prefix (NATS_URL; not for --version, --check-config and --skip-file-checks).\n"+
				"A flag given on the command line wins over its variables.")
			return c, err
		}
		if name, from, ok := unreadValue(err); ok {
			return c, flagValueError(fs, name, from)
		}
		return c, shownFlagError(err)
	}
	if fs.NArg() > 0 {
		// Shown without user information: a NATS URL lands here when the
		// flag before it lost its value (--nats-creds "$UNSET" --nats-url URL).
		return c, fmt.Errorf("unexpected argument %q: give the tenants file as --config FILE, and flags before any argument", queue.RedactURLs(fs.Arg(0)))
	}
	if c.oldEnv, err = oldEnvVars(fs, os.LookupEnv); err != nil {
		return c, err
	}
	c.unknownEnv = unknownEnvVars(fs, os.Environ())
	// Once the variables are read: the refusal is shown with their
	// warnings, and MDE_OFFBOARD_CHECK_CONFIG misspelt is one of them.
	if c.skipFileChecks && !c.checkConfig {
		return c, errors.New("--skip-file-checks only with --check-config: the start always reads the files")
	}
	if c.o.ConfigPath == "" {
		// A variable expanded to nothing on the command line: the file
		// named "" was opened, and its error named neither the flag nor
		// a file.
		return c, errors.New("--config: empty; give the tenants file, such as --config worker.yaml")
	}
	// A URL where a path belongs (a NATS URL given to the wrong flag, or
	// a Secret's key mapped to the wrong variable) is named by its flag:
	// the tenants file's open error quoted it whole, twice, and the
	// embedded server's start line logged it as its storage, password
	// and all.
	for _, p := range []struct{ flag, path, want string }{
		{"--config", c.o.ConfigPath, "the tenants file, such as --config worker.yaml"},
		{"--data-dir", c.o.DataDir, "the embedded NATS server's storage, such as --data-dir ./data"},
	} {
		if strings.Contains(p.path, "://") {
			return c, fmt.Errorf("%s: a URL, not a path; give %s", p.flag, p.want)
		}
	}
	if c.o.DataDir == "" && c.o.NATSURL == "" {
		// So for the embedded server's storage: the app's default,
		// ./data of the working directory, took the streams, not the
		// volume meant.
		return c, errors.New("--data-dir: empty; give the embedded NATS server's storage, such as --data-dir ./data (or --nats-url)")
	}
	if err := checkFlags(&c.o); err != nil {
		return c, err
	}
	return c, maxRequests(&c.o)
}

// Parts of the flag package's errors that quote an argument whole: a
// value that does not read (invalid value "…" for flag -name, invalid
// boolean value "…" for -name), an argument that is no flag (bad flag
// syntax: ---name=…).
var (
	quotedFlagValue = regexp.MustCompile(`invalid (boolean )?value "(?:[^"\\]|\\.)*" for (flag )?`)
	badFlagSyntax   = regexp.MustCompile(`(?s)bad flag syntax: .*`)
	// The name of a flag it does not know, which it quotes up to the
	// '=': an argument holding a flag and its value without one
	// ("--nats-url nats://user:password@host", one item of a container's
	// args) is all taken for the name. What follows the name's
	// characters goes.
	undefinedFlag = regexp.MustCompile(`(?s)(flag provided but not defined: -[A-Za-z0-9_-]*)[^A-Za-z0-9_-].*`)
)

// The flag package's and ff's errors for a value that does not read, on
// the command line and from a variable: the name of the flag, and of the
// variable.
var (
	unreadFlagValue = regexp.MustCompile(`^error parsing commandline arguments: invalid (?:boolean )?value "(?:[^"\\]|\\.)*" for (?:flag )?-([A-Za-z0-9_-]+): (?:parse error|value out of range)$`)
	unreadEnvValue  = regexp.MustCompile(`^error parsing environment variables: error setting flag "([A-Za-z0-9_-]+)" from environment variable "([A-Za-z0-9_]+)": (?:parse error|value out of range)$`)
)

// unreadValue is the flag, and the variable if one gave it, whose value
// err says does not read.
func unreadValue(err error) (name, from string, ok bool) {
	if m := unreadFlagValue.FindStringSubmatch(err.Error()); m != nil {
		return m[1], "", true
	}
	if m := unreadEnvValue.FindStringSubmatch(err.Error()); m != nil {
		return m[1], m[2], true
	}
	return "", "", false
}

// flagValueError says what the flag takes, without the value (it may be
// a password given to the wrong flag): the flag package's "parse error"
// or "value out of range" left the form to guess.
func flagValueError(fs *flag.FlagSet, name, from string) error {
	takes := "a value of its kind"
	if f := fs.Lookup(name); f != nil {
		if g, ok := f.Value.(flag.Getter); ok {
			switch g.Get().(type) {
			case time.Duration:
				takes = "a duration, such as 30s, 5m or 2h"
			case int, int64, uint, uint64:
				takes = "a whole number"
			case bool:
				takes = "true or false"
			}
		}
	}
	if from != "" {
		return fmt.Errorf("--%s (from %s): the value given does not read as %s", name, from, takes)
	}
	return fmt.Errorf("--%s: the value given does not read as %s", name, takes)
}

// shownFlagError is an error of the flag package without the argument it
// quotes: a password or a key given to the wrong flag, or written with
// a dash too many, would be shown. The flag is named.
func shownFlagError(err error) error {
	msg := quotedFlagValue.ReplaceAllString(err.Error(), "invalid value for ${2}")
	msg = badFlagSyntax.ReplaceAllLiteralString(msg, "bad flag syntax: write -name, --name or --name=value")
	msg = undefinedFlag.ReplaceAllString(msg, "${1} and more in the same argument: give a flag's value after '=' or as the next argument")
	return errors.New(msg)
}

// checkFlags refuses values the flags' defaults would otherwise stand in
// for silently (a negative timeout), or that NATS would take for its own
// (a duplicate window of 0 is its 2 minutes, which breaks a campaign's
// resume), before anything starts.
func checkFlags(o *app.Options) error {
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{
		{"shutdown-timeout", o.ShutdownTimeout}, {"ack-wait", o.Queue.AckWait}, {"duplicate-window", o.Queue.Duplicates},
		{"ledger-ttl", o.Queue.LedgerTTL}, {"call-timeout", o.CallTimeout}, {"quota-history", o.Queue.QuotaHistory},
		{"budget-history", o.Queue.BudgetHistory}, {"quota-margin", o.QuotaMargin},
	} {
		if d.v <= 0 {
			return fmt.Errorf("--%s %v: want a positive duration", d.flag, d.v)
		}
	}
	if o.Queue.ResultsMaxAge < 0 {
		return fmt.Errorf("--results-max-age %v: want 0 (kept for ever) or a positive duration", o.Queue.ResultsMaxAge)
	}
	// NATS refuses a stream whose duplicate window is under 100ms or
	// longer than what it keeps: the start would fail after the embedded
	// server or the connection was up, and --check-config pass them.
	if o.Queue.Duplicates < minDuplicates {
		return fmt.Errorf("--duplicate-window %v: want at least %v", o.Queue.Duplicates, minDuplicates)
	}
	if o.Queue.AckWait < minAckWait {
		return fmt.Errorf("--ack-wait %v: want at least %v (a request under way tells NATS every third of it that it is still worked on)", o.Queue.AckWait, minAckWait)
	}
	// A request whose result was stored and whose ack was lost comes
	// back after the ack wait, and is answered from the ledger under the
	// result's message id: past the window, the results stream would
	// keep that second result.
	if o.Queue.Duplicates < o.Queue.AckWait {
		return fmt.Errorf("--duplicate-window %v: want at least --ack-wait %v, after which a request whose ack was lost is answered again", o.Queue.Duplicates, o.Queue.AckWait)
	}
	if o.CallTimeout < minCallTimeout {
		return fmt.Errorf("--call-timeout %v: want at least %v (a token and an HTTPS call take tens of milliseconds)", o.CallTimeout, minCallTimeout)
	}
	if o.Queue.ResultsMaxAge > 0 && o.Queue.ResultsMaxAge < o.Queue.Duplicates {
		return fmt.Errorf("--results-max-age %v: want 0 (kept for ever) or at least --duplicate-window %v, which the results stream shares", o.Queue.ResultsMaxAge, o.Queue.Duplicates)
	}
	// A request id the ledger forgot is worked on as new: within the
	// duplicate window, its result would be dropped as the repeat of the
	// first one, an action it made never reported.
	if o.Queue.LedgerTTL < o.Queue.Duplicates {
		return fmt.Errorf("--ledger-ttl %v: want at least --duplicate-window %v, which the results stream de-duplicates over", o.Queue.LedgerTTL, o.Queue.Duplicates)
	}
	if o.Queue.BudgetHistory < queue.JournalDuplicates {
		return fmt.Errorf("--budget-history %v: want at least %v, the budget journal's duplicate window", o.Queue.BudgetHistory, queue.JournalDuplicates)
	}
	if o.Queue.Replicas < 1 || o.Queue.Replicas > 5 {
		return fmt.Errorf("--stream-replicas %d: want 1 to 5", o.Queue.Replicas)
	}
	if err := offboard.CheckPrefix(o.SubjectPrefix); err != nil {
		return fmt.Errorf("--subject-prefix: %w", err) // not quoted: it may be a secret given to the wrong flag
	}
	// NATS refuses a stream over its own subjects, and over a bucket's
	// ($KV.MDE_OFFBOARD_LEDGER.>): the start failed once NATS was up,
	// exit 1, and --check-config passed it.
	if root, _, _ := strings.Cut(o.SubjectPrefix, "."); slices.Contains(serverRoots, root) {
		return fmt.Errorf("--subject-prefix: under the NATS server's own subjects (%s), which it refuses for the worker's streams; use one such as %s",
			strings.Join(serverRoots, ", "), offboard.DefaultPrefix)
	}
	return nil
}

// serverRoots are the first tokens of the subjects the NATS server keeps
// for itself: JetStream's API, its clustering, the system account's, and
// the key-value and object stores' streams.
var serverRoots = []string{"$JS", "$JSC", "$NRG", "$SYS", "$KV", "$O"}

// minDuplicates is the shortest duplicate window NATS takes for a stream.
const minDuplicates = 100 * time.Millisecond

// minAckWait is the shortest --ack-wait. A request under way sends NATS
// a keep-alive every third of it: at 1ns that was every 0s, a loop of
// messages for every request waiting for quota, and a request whose call
// outlasts the ack wait is delivered again meanwhile.
const minAckWait = time.Second

// minCallTimeout is the shortest --call-timeout. A shorter one ends every
// call before its answer can come, yet each such call counts in the quota
// (it may have reached the API), so the tenant's quota goes on calls that
// fail and every request ends api_error. Time compressed 200 times (a
// benchmark) makes the default 30s 150ms.
const minCallTimeout = 100 * time.Millisecond

// maxRequests checks --max-requests and turns its 0 (no bound) into the
// app's.
func maxRequests(o *app.Options) error {
	switch {
	case o.MaxRequests < 0:
		return fmt.Errorf("--max-requests %d: want 0 (no bound) or more", o.MaxRequests)
	case o.MaxRequests == 0:
		o.MaxRequests = -1
	}
	return nil
}

// oldEnvVars sets each flag that neither the command line nor its
// MDE_OFFBOARD_ variable set from its variable's old name (--nats-url:
// NATS_URL), and returns the old names it used. An empty variable sets
// nothing, as ff does with an empty MDE_OFFBOARD_ one: a generic name
// left empty in a container's environment (CONFIG=, PPROF=) read a
// tenants file named "" or refused the start.
func oldEnvVars(fs *flag.FlagSet, lookup func(string) (string, bool)) ([]string, error) {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var used []string
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil || f.Name == "version" || f.Name == "check-config" || f.Name == "skip-file-checks" {
			return
		}
		name := envName(f.Name)
		if v, ok := lookup(name); ok && v != "" {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = flagValueError(fs, f.Name, name)
				return
			}
			used = append(used, name)
		}
	})
	return used, err
}

// envName is a flag's variable without envPrefix, as ff names it:
// --nats-url, NATS_URL.
func envName(flagName string) string { return strings.ToUpper(strings.ReplaceAll(flagName, "-", "_")) }

// serviceLink matches the variables Kubernetes sets for a Service named
// mde-offboard in the pod's namespace (unless the pod's
// enableServiceLinks is false): no misspelt setting.
var serviceLink = regexp.MustCompile(`^MDE_OFFBOARD_(SERVICE_HOST|SERVICE_PORT(_\w+)?|PORT(_\w+)?)$`)

// unknownEnvVars are the variables of environ named with envPrefix that
// set no flag of fs, sorted: ff ignores them, and a misspelt name
// (MDE_OFFBOARD_SHUTDOWN_TIMOUT) left its setting at the default without
// a word. Their values are not read: one may be a password.
func unknownEnvVars(fs *flag.FlagSet, environ []string) []string {
	known := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) {
		known[envPrefix+envName(f.Name)] = true
	})
	var unknown []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, envPrefix) && !known[name] && !serviceLink.MatchString(name) {
			unknown = append(unknown, name)
		}
	}
	slices.Sort(unknown)
	return unknown
}

// checkConfig checks the tenants file f, read from o.ConfigPath with
// err, and it against the flags (its windows and budgets against the
// journals' histories), then the files it names (secrets, certificates,
// federated tokens, CA bundles), as the worker does at start: 0 and one
// line when it is valid, 2 and one line saying what is wrong when not,
// or, for the files, one line per problem, naming the tenant and the
// setting. What a file holds is never shown. Without files, the files
// are not read (--skip-file-checks).
func checkConfig(o app.Options, f *config.File, err error, files bool, stdout, stderr io.Writer) int {
	path := o.ConfigPath
	if err != nil {
		fmt.Fprintln(stderr, "worker:", path+":", oneLine(err))
		return 2
	}
	if err := app.CheckConfig(f, o); err != nil {
		// An error the flags alone give, against no tenant, is not the
		// file's: it does not name it.
		where := path + ": "
		if app.CheckConfig(&config.File{}, o) != nil {
			where = ""
		}
		fmt.Fprintln(stderr, "worker: "+where+oneLine(err))
		return 2
	}
	if files {
		if errs := app.CheckFiles(f, time.Now()); len(errs) > 0 {
			for _, err := range firstErrors(errs) {
				fmt.Fprintln(stderr, "worker:", path+":", oneLine(err))
			}
			return 2
		}
	}
	fmt.Fprintf(stdout, "worker: %s: valid, %d tenant(s)\n", path, len(f.Tenants))
	return 0
}

// maxFileErrors is how many of the files' problems --check-config
// gives: a CA bundle or a secrets volume missing for thousands of
// tenants would give a line for each.
const maxFileErrors = 10

// firstErrors is the first maxFileErrors of errs, and a last one saying
// how many more there are.
func firstErrors(errs []error) []error {
	if len(errs) <= maxFileErrors {
		return errs
	}
	return append(errs[:maxFileErrors:maxFileErrors], fmt.Errorf("and %d more", len(errs)-maxFileErrors))
}

// oneLine is err's text on one line: its lines, their indentation left
// out, joined by "; ", or by a space after a line ending in ':' (the
// YAML library's "unmarshal errors:" and its list).
func oneLine(err error) string {
	lines := strings.Split(err.Error(), "\n")
	var b strings.Builder
	for _, l := range lines {
		l = strings.TrimSpace(l)
		switch {
		case l == "":
			continue
		case b.Len() > 0 && strings.HasSuffix(b.String(), ":"):
			b.WriteString(" ")
		case b.Len() > 0:
			b.WriteString("; ")
		}
		b.WriteString(l)
	}
	return b.String()
}

// version is the module version and VCS revision the binary was built from.
func version() string { return buildinfo.Read().String() }

// newLogger writes to w in the format asked for. It adds no stack traces:
// every error is one line.
func newLogger(level, format string, w io.Writer) (*zap.Logger, error) {
	// Neither value is quoted: a Secret's value mapped to the wrong
	// variable would be shown.
	// Above error (dpanic, panic, fatal, which zap reads too) the
	// worker logs nothing: a start that failed said nothing at all.
	lvl, err := zapcore.ParseLevel(level)
	if err != nil || lvl > zapcore.ErrorLevel {
		return nil, errors.New("--log-level: want debug, info, warn or error")
	}
	var enc zapcore.Encoder
	switch format {
	case "json":
		cfg := zap.NewProductionEncoderConfig()
		cfg.TimeKey = "ts"
		cfg.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewJSONEncoder(cfg)
	case "console":
		cfg := zap.NewDevelopmentEncoderConfig()
		cfg.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewConsoleEncoder(cfg)
	default:
		return nil, errors.New("--log-format: want json or console")
	}
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), lvl)
	// The production logger's sampling: at most 100 equal messages a
	// second, then every 100th.
	core = zapcore.NewSamplerWithOptions(core, time.Second, 100, 100)
	return zap.New(core, zap.AddCaller(), zap.ErrorOutput(zapcore.Lock(zapcore.AddSync(w)))), nil
}
