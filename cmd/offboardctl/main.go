package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/buildinfo"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// Exit status.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

// usageError is a mistake in how the command was called: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// withoutPath is a file error without the path and operation the os
// package puts first ("open PATH: ..."), for a message that names the
// flag and path itself.
func withoutPath(err error) error {
	if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// run runs the command line; errors are one line on stderr.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), stopSignals()...)
	defer stop()
	return runContext(ctx, args, stdout, stderr)
}

// stopSignals are the signals that end a command as Ctrl-C does: a
// campaign run writes its report and removes its copies of the CSV and
// of its results. A hangup too (the terminal or the SSH session closed
// under a run of hours), which killed it with neither done; unless
// hangups are ignored (nohup), which a handler would undo.
func stopSignals() []os.Signal {
	sigs := []os.Signal{os.Interrupt, syscall.SIGTERM}
	if !signal.Ignored(syscall.SIGHUP) {
		sigs = append(sigs, syscall.SIGHUP)
	}
	return sigs
}

// runContext is run under a context that an interrupt ends.
func runContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root, c := newRoot(stdout, stderr)
	// Closed here, once the error is explained (that reads from NATS),
	// not in a persistent post-run, which cobra runs only after a command
	// that succeeded.
	defer c.close()
	root.SetArgs(args)
	err := cmp.Or(root.ExecuteContext(ctx), c.helpErr, versionArgs(root))
	if err == nil {
		return exitOK
	}
	_, err = queue.Refusal(c.nc, c.explainNoResponders(ctx, err))
	fmt.Fprintln(stderr, "offboardctl:", explainMissingStream(interrupted(ctx, err)))
	if errors.As(err, new(usageError)) {
		return exitUsage
	}
	return exitFailed
}

// versionArgs refuses an argument given with --version, which cobra
// ignored: `offboardctl --version extra` showed the version, exit 0.
func versionArgs(root *cobra.Command) error {
	if shown, _ := root.Flags().GetBool("version"); !shown {
		return nil
	}
	if rest := root.Flags().Args(); len(rest) > 0 {
		return usagef("--version takes no argument, not %s", offboard.Quote(queue.RedactURLs(rest[0])))
	}
	return nil
}

// interrupted names the interrupt (ctx's cause) in an error it ended
// that does not name it yet: a read of a stream cut short by Ctrl-C was
// told as "context canceled" alone.
func interrupted(ctx context.Context, err error) error {
	cause := context.Cause(ctx)
	if cause == nil || !errors.Is(err, context.Canceled) || errors.Is(err, cause) {
		return err
	}
	return fmt.Errorf("%w (%w)", err, cause)
}

// explainMissingStream adds to an error of a stream the server does not
// have what to do about it, as the missing control bucket's error says:
// no worker has made the streams, or deploy/nats was not applied.
func explainMissingStream(err error) error {
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return err
	}
	return fmt.Errorf("%w (the worker's streams are not there: start a worker, or apply deploy/nats)", err)
}

// cli holds what every subcommand shares: its connection settings and,
// once connected, the connection.
type cli struct {
	conn     queue.Conn
	prefix   string
	timeout  time.Duration
	stdout   io.Writer
	stderr   io.Writer
	nc       *nats.Conn
	js       jetstream.JetStream
	subjects offboard.Subjects
	// closed closes once the connection is closed for good: the client
	// gave up reconnecting, or the server refused its credentials.
	closed chan struct{}
	// lostSince is when the connection was lost (Unix nanoseconds), 0
	// while it is up: the client is reconnecting meanwhile.
	lostSince atomic.Int64
	// helpErr is a mistake found while --help was asked for, when cobra
	// shows help instead of running anything.
	helpErr error
	// fromVar names the environment variable that set each flag not
	// given on the command line.
	fromVar map[string]string
}

func newRoot(stdout, stderr io.Writer) (*cobra.Command, *cli) {
	c := &cli{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "offboardctl",
		Short:         "Steer the Defender for Endpoint offboarding worker",
		Version:       version(),
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if !connects(cmd) {
				return nil // help and completion: no connection settings read
			}
			if err := c.fromEnv(cmd.Flags()); err != nil {
				return err
			}
			return c.check()
		},
		// Any arguments reach RunE, so an unknown command is a usage error.
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return unknownCommand(cmd, args[0])
			}
			return usagef("a command is required; see offboardctl --help")
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(flagError)
	// cobra shows the version whatever else is given; with an argument
	// (`--version extra`) it shows nothing and runContext refuses it.
	root.SetVersionTemplate(`{{if not .Flags.Args}}{{printf "%s version %s" .DisplayName .Version}}` + "\n{{end}}")
	pf := root.PersistentFlags()
	pf.StringVar(&c.conn.URL, "nats-url", nats.DefaultURL, "NATS server URL(s), comma-separated (env MDE_OFFBOARD_NATS_URL, NATS_URL)")
	pf.StringVar(&c.conn.Creds, "nats-creds", "", "NATS credentials file (env MDE_OFFBOARD_NATS_CREDS, NATS_CREDS)")
	pf.StringVar(&c.conn.TLSCA, "tlsca", "", "CA bundle to trust for the NATS server (env MDE_OFFBOARD_TLSCA, NATS_CA)")
	pf.StringVar(&c.conn.TLSCert, "tlscert", "", "client certificate for NATS (env MDE_OFFBOARD_TLSCERT, NATS_CERT)")
	pf.StringVar(&c.conn.TLSKey, "tlskey", "", "client certificate's key (env MDE_OFFBOARD_TLSKEY, NATS_KEY)")
	pf.StringVar(&c.conn.InboxPrefix, "nats-inbox-prefix", "", "subject prefix of replies instead of _INBOX, such as _INBOX_offboardctl (env MDE_OFFBOARD_NATS_INBOX_PREFIX)")
	pf.StringVar(&c.prefix, "subject-prefix", offboard.DefaultPrefix, "prefix of every subject (env MDE_OFFBOARD_SUBJECT_PREFIX)")
	pf.DurationVar(&c.timeout, "connect-timeout", 5*time.Second, "how long to wait for NATS")
	for _, sub := range commands {
		root.AddCommand(sub(c))
	}
	root.SetHelpCommand(helpCommand())
	addExamples(root)
	helpUsage(root, c)
	completionUsage(root)
	return root, c
}

// helpUsage makes --help after an unknown command a usage error, where
// cobra would show the parent's help and exit 0 ("offboardctl bogus
// --help", "offboardctl campaign bogus -h").
func helpUsage(root *cobra.Command, c *cli) {
	show := root.HelpFunc()
	root.SetHelpFunc(func(cmd *cobra.Command, args []string) {
		if rest := cmd.Flags().Args(); cmd.HasAvailableSubCommands() && len(rest) > 0 {
			c.helpErr = unknownCommand(cmd, rest[0])
			return
		}
		show(cmd, args)
	})
}

// connects says whether cmd may connect to NATS: help, completion and
// cobra's hidden completion commands do not, and a connection setting
// they do not use must not stop them.
func connects(cmd *cobra.Command) bool {
	for ; cmd != nil; cmd = cmd.Parent() {
		if n := cmd.Name(); n == "help" || n == "completion" || strings.HasPrefix(n, "__complete") {
			return false
		}
	}
	return true
}

// helpCommand is cobra's help command, with an unknown topic a usage
// error rather than the whole usage and exit status 0.
func helpCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "Help about any command",
		// Completes the commands under those already typed, as cobra's
		// own help command does.
		ValidArgsFunction: func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			parent, rest, err := cmd.Root().Find(args)
			if err != nil || len(rest) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp // after an unknown topic, nothing
			}
			var topics []cobra.Completion
			for _, sub := range parent.Commands() {
				if sub.IsAvailableCommand() && strings.HasPrefix(sub.Name(), toComplete) {
					topics = append(topics, cobra.CompletionWithDesc(sub.Name(), sub.Short))
				}
			}
			return topics, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			target, rest, err := cmd.Root().Find(args)
			if target == nil || err != nil || len(rest) > 0 {
				return usagef("unknown help topic %s; see offboardctl --help", offboard.Quote(strings.Join(shownArgs(args), " ")))
			}
			return target.Help()
		},
	}
}

// completionUsage makes cobra's completion command's mistakes usage
// errors: a missing or unknown shell, an argument after the shell.
func completionUsage(root *cobra.Command) {
	root.InitDefaultCompletionCmd()
	for _, comp := range root.Commands() {
		if comp.Name() != "completion" {
			continue
		}
		shells := make([]string, 0, len(comp.Commands()))
		for _, sh := range comp.Commands() {
			sh.Args = exactArgs(0)
			shells = append(shells, sh.Name())
		}
		comp.Args = cobra.ArbitraryArgs
		comp.RunE = func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("completion takes a shell: %s", strings.Join(shells, ", "))
			}
			return usagef("completion: unknown shell %s; want one of %s", offboard.Quote(queue.RedactURLs(args[0])), strings.Join(shells, ", "))
		}
	}
}

// commands are the subcommands; each file adds its own.
var commands []func(*cli) *cobra.Command

// env names each connection flag's environment variables, first wins.
var env = map[string][]string{
	"nats-url":          {"MDE_OFFBOARD_NATS_URL", "NATS_URL"},
	"nats-creds":        {"MDE_OFFBOARD_NATS_CREDS", "NATS_CREDS"},
	"tlsca":             {"MDE_OFFBOARD_TLSCA", "MDE_OFFBOARD_NATS_CA", "NATS_CA"}, // the worker's name first
	"tlscert":           {"MDE_OFFBOARD_TLSCERT", "MDE_OFFBOARD_NATS_CERT", "NATS_CERT"},
	"tlskey":            {"MDE_OFFBOARD_TLSKEY", "MDE_OFFBOARD_NATS_KEY", "NATS_KEY"},
	"subject-prefix":    {"MDE_OFFBOARD_SUBJECT_PREFIX", "SUBJECT_PREFIX"},
	"nats-inbox-prefix": {"MDE_OFFBOARD_NATS_INBOX_PREFIX"},
}

// fromEnv fills the flags not given on the command line from the
// environment.
func (c *cli) fromEnv(fs *pflag.FlagSet) error {
	for name, vars := range env {
		f := fs.Lookup(name)
		if f == nil || f.Changed {
			continue
		}
		for _, v := range vars {
			if val, ok := os.LookupEnv(v); ok {
				if err := f.Value.Set(val); err != nil {
					return usagef("%s: %v", v, err)
				}
				if c.fromVar == nil {
					c.fromVar = map[string]string{}
				}
				c.fromVar[name] = v
				break
			}
		}
	}
	c.conn.SubjectPrefix = c.prefix
	if err := c.conn.Check(); err != nil {
		return usageError{err}
	}
	c.subjects = offboard.Subjects{Prefix: c.prefix}
	return nil
}

// check refuses connection settings that cannot work.
func (c *cli) check() error {
	if c.timeout <= 0 {
		return usagef("--connect-timeout %v: want a positive duration", c.timeout)
	}
	if strings.TrimSpace(c.conn.URL) == "" {
		return usagef("%s is empty: give the NATS server's URL", c.flagName("nats-url"))
	}
	if err := offboard.CheckPrefix(c.prefix); err != nil {
		return usagef("%s: %v", c.flagName("subject-prefix"), err) // not quoted: it may be a secret given to the wrong flag
	}
	return nil
}

// flagName names a connection flag as the operator gave it: with the
// environment variable that set it, if one did ("--nats-url is empty"
// said nothing of an MDE_OFFBOARD_NATS_URL set empty, which hides
// NATS_URL).
func (c *cli) flagName(name string) string {
	if v, ok := c.fromVar[name]; ok {
		return "--" + name + " (from " + v + ")"
	}
	return "--" + name
}

// connect opens the NATS connection and JetStream, once. An interrupt
// (ctx) ends the wait for a server that does not answer, which
// nats.Connect would wait for up to --connect-timeout.
func (c *cli) connect(ctx context.Context) (jetstream.JetStream, error) {
	if c.js != nil {
		return c.js, nil
	}
	closed := make(chan struct{})
	// Whether a server of the list took the connection: nats.go tells
	// "no servers available" when the last it tries refuses it, even
	// after another that answered and refused the credentials.
	var answered atomic.Bool
	opts := append(c.conn.Options(), nats.Name("offboardctl"), nats.Timeout(c.timeout),
		nats.SetCustomDialer(answeringDialer{d: &net.Dialer{Timeout: c.timeout}, answered: &answered}),
		// A connection gone silent without being closed (a firewall or a
		// NAT that dropped its flow, a server frozen) is noticed after
		// two pings unanswered, within half a minute, and made again:
		// with the client library's ping every two minutes, a campaign
		// run waited four to six minutes for results stored meanwhile.
		nats.PingInterval(pingInterval), nats.MaxPingsOutstanding(2),
		// A refused permission is told once, in the command's error
		// (explainRefused), not as a raw line of its own; a refused
		// publish's subject is remembered (queue.PublishRefused).
		nats.ErrorHandler(queue.NoteRefusal),
		// Real time: when the connection went, for the progress to say.
		nats.DisconnectErrHandler(func(*nats.Conn, error) { c.lostSince.CompareAndSwap(0, time.Now().UnixNano()) }),
		nats.ReconnectHandler(func(*nats.Conn) { c.lostSince.Store(0) }),
		nats.ClosedHandler(func(nc *nats.Conn) { queue.ForgetRefusals(nc); close(closed) }))
	type connected struct {
		nc  *nats.Conn
		err error
	}
	done := make(chan connected, 1)
	go func() {
		nc, err := nats.Connect(c.conn.URL, opts...)
		if err != nil {
			done <- connected{err: fmt.Errorf("connect to NATS at %s: %w%s", queue.RedactURLs(c.conn.URL), err, c.noServerHint(err, answered.Load()))}
			return
		}
		if err := queue.CheckReplies(nc, c.timeout); err != nil {
			nc.Close()
			done <- connected{err: err}
			return
		}
		done <- connected{nc: nc}
	}()
	var nc *nats.Conn
	select {
	case r := <-done:
		if r.err != nil {
			return nil, r.err
		}
		nc = r.nc
	case <-ctx.Done():
		// The connection, should it come, is closed when it does.
		go func() {
			if r := <-done; r.nc != nil {
				r.nc.Close()
			}
		}()
		return nil, fmt.Errorf("connect to NATS at %s: %w", queue.RedactURLs(c.conn.URL), context.Cause(ctx))
	}
	// A JetStream request made without a deadline of the command's own
	// waits --connect-timeout, not nats.go's 5 s: dead ls, dead retry and
	// the campaign commands gave up after 5 s whatever the flag said, and
	// then told the operator to raise it.
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(c.timeout))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	c.nc, c.js, c.closed = nc, js, closed
	if err := c.checkServedPrefix(ctx, js); err != nil {
		return nil, err
	}
	return js, nil
}

// checkServedPrefix refuses a --subject-prefix that is not the worker's:
// the streams' names are fixed, their subjects follow the worker's prefix.
// With another one, dead ls would list none of the dead letters there are
// and status count none of the calls, and pause write a pause the worker
// applies, then fail on its audit event. The request stream that cannot
// be read (not there yet, no permission, no JetStream) is left to the
// command, which says so in its own words.
func (c *cli) checkServedPrefix(ctx context.Context, js jetstream.JetStream) error {
	if !mayReadStream(c.nc, offboard.StreamRequests, c.timeout) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	stream, err := js.Stream(ctx, offboard.StreamRequests)
	if err != nil {
		return nil
	}
	want := c.subjects.AllRequests()
	subjects := stream.CachedInfo().Config.Subjects
	// The worker's rule: its setup makes the stream take
	// <prefix>.request.> alone, and a worker under --no-setup also runs
	// with a stream written in another form (one subject per priority).
	// A prefix whose subjects the stream would take too
	// (mde.offboard.request) names nothing anyone publishes.
	if queue.TakesRequestsOf(subjects, c.subjects) {
		return nil
	}
	return fmt.Errorf("--subject-prefix %s is not the worker's: stream %s takes %s, not %s; give the prefix the worker runs with",
		offboard.Quote(c.prefix), offboard.StreamRequests, strings.Join(subjects, ", "), offboard.Quote(want))
}

// mayReadStream says whether the user may ask for the stream's
// information, as far as the server says at once. A request it may not
// publish is refused, but the refusal does not end the request, which
// waits out its timeout: a publish without a reply, then a flush, hears
// the refusal before the server's answer to the flush.
func mayReadStream(nc *nats.Conn, stream string, timeout time.Duration) bool {
	subject := "$JS.API.STREAM.INFO." + stream
	if nc.Publish(subject, nil) != nil || nc.FlushTimeout(timeout) != nil {
		return false
	}
	last := nc.LastError()
	return !errors.Is(last, nats.ErrPermissionViolation) || !strings.Contains(last.Error(), subject)
}

// noServerHint says, after a connection refused everywhere, where the
// NATS server was looked for and what to do: "no servers available for
// connection" alone left a first run, the worker not started, guessing.
// So it does for a server without the TLS the settings ask for.
// A server that took the connection (answered), then refused it, is no
// absent server: with several URLs, nats.go reports the last one's
// refusal alone.
func (c *cli) noServerHint(err error, answered bool) string {
	if hint := c.conn.NoTLSHint(err); hint != "" {
		return hint
	}
	if !errors.Is(err, nats.ErrNoServers) {
		return ""
	}
	if answered {
		return " (a server of the list took the connection, then refused it, the others not answering: " +
			"check the user and password, or " + c.flagName("nats-creds") + ", and the TLS settings for that server)"
	}
	if c.conn.URL == nats.DefaultURL {
		return " (no NATS server answers there: is the worker running? its embedded server listens there; " +
			"with a NATS server of your own, give its URL as --nats-url)"
	}
	return " (no NATS server answers there: is it running, and is " + c.flagName("nats-url") + " the worker's?)"
}

// answeringDialer dials as d does and records in answered that a
// server took a connection.
type answeringDialer struct {
	d        *net.Dialer
	answered *atomic.Bool
}

func (a answeringDialer) Dial(network, address string) (net.Conn, error) {
	conn, err := a.d.Dial(network, address)
	if err == nil {
		a.answered.Store(true)
	}
	return conn, err
}

// lostFor is how long the connection has been lost, as of now, while
// the client reconnects; false while it is up.
func (c *cli) lostFor(now time.Time) (time.Duration, bool) {
	since := c.lostSince.Load()
	if since == 0 {
		return 0, false
	}
	return max(now.Sub(time.Unix(0, since)), 0), true
}

// whileConnected is ctx, ended once the connection (connect) is closed
// for good, with a cause that says so: a wait on NATS that nothing else
// bounds (campaign run without --timeout) would otherwise go on for
// ever, as nothing reaches a closed connection, NATS back or not. The
// returned func releases it.
func (c *cli) whileConnected(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		select {
		case <-c.closed:
			why := ""
			if err := c.nc.LastError(); err != nil {
				why = ": " + err.Error()
			}
			cancel(fmt.Errorf("the connection to NATS at %s was closed%s", queue.RedactURLs(c.conn.URL), why))
		case <-done:
		}
	}()
	return ctx, func() { close(done); cancel(nil) }
}

// explainNoResponders says why NATS had no one to answer a JetStream
// request when the server, or the account, has no JetStream.
func (c *cli) explainNoResponders(ctx context.Context, err error) error {
	if c.js == nil {
		return err
	}
	timedOut := errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil && !errors.As(err, new(*flagTimeout))
	if timedOut && !c.nc.IsConnected() {
		// The server went away under the command (a read of many
		// messages, between two fetches): no election, nor a flag,
		// is to blame.
		return fmt.Errorf("%w (the connection to NATS at %s was lost, and is not back: run it again once NATS is)", err, queue.RedactURLs(c.conn.URL))
	}
	if timedOut && errors.Is(c.nc.LastError(), nats.ErrPermissionViolation) {
		// The timeout is NATS's refusal of a publish, which
		// queue.Refusal tells: no election, nor a flag, is to blame.
		return err
	}
	if timedOut && errors.As(err, new(ownWait)) {
		// A wait of the command's own, which --connect-timeout does not
		// set: its error says what to do.
		return err
	}
	if timedOut {
		// NATS took the connection but JetStream did not answer in
		// time: "bucket MDE_OFFBOARD_CONTROL: context deadline exceeded"
		// said nothing of why, or of what to do.
		return fmt.Errorf("%w (NATS JetStream did not answer in time: a leader election under way, or a busy server? run it again, or raise --connect-timeout, now %v)", err, c.timeout)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.timeout)
	defer cancel()
	if explained := queue.ExplainNoJetStream(ctx, c.js, err); explained != err { //nolint:errorlint // the same error: nothing to explain
		return fmt.Errorf("NATS at %s: %w", queue.RedactURLs(c.conn.URL), explained)
	}
	return err
}

// pingInterval is how often the connection to NATS is checked, as the
// worker's is by default.
const pingInterval = 10 * time.Second

// close closes the connection, if one was made, once what was published
// on it is flushed.
func (c *cli) close() {
	if c.nc != nil {
		_ = c.nc.Drain()
	}
}

// flagTimeout is the cause of a context a command's --timeout bounds: an
// error it ends names the flag, not NATS.
type flagTimeout struct{ d time.Duration }

func (e *flagTimeout) Error() string { return fmt.Sprintf("--timeout %v ran out", e.d) }

// version is the module version and VCS revision the binary was built from.
func version() string { return buildinfo.Read().String() }

// noSubcommandArgs refuses an argument to a group of commands as an
// unknown command.
func noSubcommandArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return unknownCommand(cmd, args[0])
	}
	return nil
}

// flagError is a mistake in a flag, told without the argument pflag
// quotes whole: a value given to the wrong flag, or after a single dash
// (-nats-url=URL, as the worker takes its flags), may be a password or a
// key. A flag name written with one dash is named with its two.
func flagError(cmd *cobra.Command, err error) error {
	var (
		unknown *pflag.NotExistError
		invalid *pflag.InvalidValueError
		syntax  *pflag.InvalidSyntaxError
	)
	switch {
	case errors.As(err, &unknown) && unknown.GetSpecifiedShortnames() != "":
		name, _, _ := strings.Cut(unknown.GetSpecifiedShortnames(), "=")
		if cmd.Flags().Lookup(name) != nil {
			return usagef("unknown flag -%s: write it --%s, with two dashes", name, name)
		}
		return usagef("unknown shorthand flag -%s; see %s --help", unknown.GetSpecifiedName(), cmd.CommandPath())
	case errors.As(err, &unknown) && flagNameEnd(unknown.GetSpecifiedName()) < len(unknown.GetSpecifiedName()):
		// A flag and its value in one argument ("--nats-url URL", one
		// item of a container's args): pflag takes it all for the name.
		name := unknown.GetSpecifiedName()[:flagNameEnd(unknown.GetSpecifiedName())]
		if name != "" && cmd.Flags().Lookup(name) != nil {
			return usagef("--%s and more in the same argument: give a flag's value after '=' or as the next argument", name)
		}
		return usagef("unknown flag --%s and more in the same argument; see %s --help", name, cmd.CommandPath())
	case errors.As(err, &invalid) && errors.Is(err, errGivenTwice):
		return usagef("--%s given twice, with two values: give it once", invalid.GetFlag().Name)
	case errors.As(err, &invalid) && errors.Is(err, errGivenEmpty):
		return usagef("--%s is given empty (a shell variable not set?): give a value, or leave the flag out", invalid.GetFlag().Name)
	case errors.As(err, &invalid):
		f := invalid.GetFlag()
		return usagef("--%s: the value given does not read as %s", f.Name, takes(f.Value))
	case errors.As(err, &syntax):
		return usagef("bad flag syntax: write --name or --name=value")
	}
	return usageError{err}
}

// flagNameEnd is where the characters a flag's name may hold end in
// name, as pflag took it from an argument.
func flagNameEnd(name string) int {
	for i, r := range name {
		if !(r == '-' || r == '_' || '0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z') {
			return i
		}
	}
	return len(name)
}

// errGivenTwice is a onceFlag's second value.
var errGivenTwice = errors.New("given twice")

// errGivenEmpty is a onceFlag given an empty value.
var errGivenEmpty = errors.New("given empty")

// onceValue is a string flag's value that a second, different value does
// not replace: see onceFlag.
type onceValue struct {
	p   *string
	set bool
}

func (v *onceValue) String() string {
	if v.p == nil {
		return ""
	}
	return *v.p
}

func (v *onceValue) Set(s string) error {
	if s == "" {
		return errGivenEmpty
	}
	if v.set && s != *v.p {
		return errGivenTwice
	}
	*v.p, v.set = s, true
	return nil
}

func (v *onceValue) Type() string { return "string" }

// onceFlag is fs.StringVar for a flag that picks what a command acts on
// (a tenant, a priority, a campaign, a file): given twice with two values
// it is bad usage, where a plain string flag keeps the last without a
// word (`pause --priority bulk --priority normal` paused normal alone).
// The same value twice is taken. An empty value is bad usage too: most
// likely a script's variable not set (`--name "$WAVE"`), which for a
// flag with a default took the default without a word.
func onceFlag(fs *pflag.FlagSet, p *string, name, value, usage string) {
	*p = value
	fs.Var(&onceValue{p: p}, name, usage)
}

// onceOf is a flag's value that a second, different value does not
// replace, as onceFlag's, for a flag of another type than a string:
// `dead retry --seq 2 --seq 3` retried dead letter 3 alone. Values are
// compared as the flag reads them (--seq 7 --seq 07 is one value).
type onceOf struct {
	pflag.Value
	first string
	set   bool
}

func (v *onceOf) Set(s string) error {
	if err := v.Value.Set(s); err != nil {
		return err
	}
	if v.set && v.Value.String() != v.first {
		_ = v.Value.Set(v.first)
		return errGivenTwice
	}
	v.first, v.set = v.Value.String(), true
	return nil
}

// once makes the flag name, already defined on fs, refuse a second value
// that is not its first (onceOf).
func once(fs *pflag.FlagSet, name string) {
	f := fs.Lookup(name)
	if f.Value.Type() == "bool" {
		// Behind the wrapper pflag no longer sees a bool flag: --json
		// would want a value.
		panic("once: --" + name + " is a bool flag")
	}
	if f.Value.Type() == "duration" && f.DefValue == "0s" {
		// pflag leaves a zero default out of the help by the value's
		// type, which the wrapper hides: behind it, "0s" was shown as
		// campaign run --timeout's default. "0" it leaves out.
		f.DefValue = "0"
	}
	f.Value = &onceOf{Value: f.Value}
}

// onceBool is once for a bool flag: `campaign run --dry-run
// --dry-run=false` (a wrapper's default after the operator's flag) ran
// for real without a word. The flag's NoOptDefVal, set when it was
// defined, still lets it stand alone (--dry-run is --dry-run=true).
func onceBool(fs *pflag.FlagSet, name string) {
	f := fs.Lookup(name)
	if f.Value.Type() != "bool" || f.NoOptDefVal == "" {
		panic("onceBool: --" + name + " is no bool flag")
	}
	f.Value = &onceOf{Value: f.Value}
}

// unknownCommand names the argument without user information: a NATS URL
// lands here when the flag before it lost its value (--nats-creds
// "$UNSET" --nats-url URL).
func unknownCommand(cmd *cobra.Command, name string) error {
	return usagef("unknown command %s for %q; see %s --help", offboard.Quote(queue.RedactURLs(name)), cmd.CommandPath(), cmd.CommandPath())
}

// shownArgs are arguments as an error may quote them: each without user
// information, as unknownCommand names its argument.
func shownArgs(args []string) []string {
	shown := make([]string, len(args))
	for i, a := range args {
		shown[i] = queue.RedactURLs(a)
	}
	return shown
}

// exactArgs is cobra.ExactArgs with a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return argCountError(cmd, len(args))
		}
		return nil
	}
}

// argCountError says that cmd was given got arguments where its usage
// line wants others. The usage line names them (TENANT), or shows that
// the campaign commands take flags only (--tenant T), which a count
// alone ("takes 0 argument(s)") did not. The arguments are not quoted: one
// may be a value meant for a flag, a credential among them.
func argCountError(cmd *cobra.Command, got int) error {
	noun := "arguments"
	if got == 1 {
		noun = "argument"
	}
	return usagef("usage: %s; got %d %s; see %s --help", strings.TrimSuffix(cmd.UseLine(), " [flags]"), got, noun, cmd.CommandPath())
}

// takes is what a flag's value must read as, in words: Go's type names
// ("a uint64", "a bool") left the form to guess.
func takes(v pflag.Value) string {
	if o, ok := v.(*onceOf); ok {
		v = o.Value
	}
	if d, ok := v.(interface{ Takes() string }); ok {
		return d.Takes()
	}
	switch typ := v.Type(); {
	case typ == "bool":
		return "true or false"
	case typ == "duration":
		return "a duration, such as 30s, 5m or 2h"
	case strings.HasPrefix(typ, "int"), strings.HasPrefix(typ, "uint"):
		return "a whole number"
	default:
		return "a " + typ
	}
}
