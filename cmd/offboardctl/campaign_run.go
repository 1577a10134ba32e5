package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/control"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// runFlags are campaign run's flags.
type runFlags struct {
	tenant, csv, name, priority, comment, report, rate string
	dryRun, unknownTenant, ignoreLastSeen              bool
	timeout, every                                     time.Duration
	maxPending                                         int
}

func newCampaignRunCmd(c *cli) *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run --tenant T --csv FILE",
		Short: "Publish a CSV's devices as offboard requests, wait for every result, write the report",
		Long: `Publishes one request per CSV row (request id <NAME>-<row as 6 digits>,
source campaign:<NAME>), waits for every row's result and writes the report.
A CSV with a lastSeen column (a plan's) offboards a row's device only if
Defender has not seen it since that time (the request's notSeenSince): a
device seen again after the plan is refused, blocked_by_policy, rule
notSeenSince; a lastSeen cell that is no time refuses the CSV before
anything is published; --ignore-last-seen leaves the column out.
Running the same command again publishes nothing that was published before
and writes the same report: an interrupted campaign resumes.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := newCampaignRun(c, f)
			if err != nil {
				return err
			}
			defer r.close()
			defer outliveReader()()
			return r.run(cmd.Context())
		},
	}
	fl := cmd.Flags()
	onceFlag(fl, &f.tenant, "tenant", "", "tenant (required)")
	onceFlag(fl, &f.csv, "csv", "", "CSV file with a header row and a machineId or computerDnsName column (required)")
	onceFlag(fl, &f.name, "name", "", "campaign name (default: the CSV's base name)")
	onceFlag(fl, &f.priority, "priority", string(offboard.Bulk), "bulk or normal")
	fl.BoolVar(&f.dryRun, "dry-run", false, "publish every row as a dry run (name it apart from the real run: their request ids must differ)")
	fl.StringVar(&f.comment, "comment", "", "comment of rows without their own")
	fl.BoolVar(&f.ignoreLastSeen, "ignore-last-seen", false, "offboard each row's device even if Defender saw it after the CSV's lastSeen")
	onceFlag(fl, &f.report, "report", "", "report file (default <NAME>-report.csv)")
	fl.DurationVar(&f.timeout, "timeout", 0, "give up waiting after this long (0: wait for every result)")
	fl.StringVar(&f.rate, "rate", "", "the tenant's offboard limits for the ETA, as 100/1m,1500/1h (default: those its worker recorded, else the documented ones)")
	// Given twice with two values, the last would win without a word
	// (--timeout 1m --timeout 0 waits for ever).
	for _, name := range []string{"comment", "timeout", "rate"} {
		once(fl, name)
	}
	// --dry-run --dry-run=false ran for real.
	onceBool(fl, "dry-run")
	onceBool(fl, "ignore-last-seen")
	fl.DurationVar(&f.every, "progress-every", 5*time.Second, "how often a progress line is printed when not on a terminal")
	fl.BoolVar(&f.unknownTenant, "unknown-tenant", false, "publish to a tenant no worker has set up yet (not in any tenants file)")
	fl.IntVar(&f.maxPending, "max-pending", 4096, "publishes awaiting the server's acknowledgement at most")
	_ = fl.MarkHidden("max-pending")
	return cmd
}

// outliveReader keeps a run whose standard output nobody reads any more
// (piped to tee, which the same Ctrl-C ended first; to less, quit) from
// being killed by SIGPIPE at its next write, the summary after its
// report: its copies of the CSV and of its results stayed behind, and
// what to do next was not said. The write fails, and the run goes on.
// The returned func restores the default.
func outliveReader() (restore func()) {
	ch := make(chan os.Signal, 1) // never read: a SIGPIPE is dropped
	signal.Notify(ch, syscall.SIGPIPE)
	return func() { signal.Stop(ch) }
}

// campaignRun is one run of a campaign.
type campaignRun struct {
	c       *cli
	f       runFlags
	src     string // the private copy of the CSV that the run reads
	set     campaign.Settings
	prio    offboard.Priority
	windows []campaign.Window
	total   int
	rows    *campaign.Rows
	js      jetstream.JetStream // with bounded asynchronous publishing

	// budget is when the tenant's budget lets the rows ahead go; nil: no budget.
	budget atomic.Pointer[etaRead]
	// quota is when the quota lets the rows ahead go after the calls
	// already made in its windows; nil: counted from empty windows.
	quota atomic.Pointer[etaRead]

	published, duplicates, skipped atomic.Int64
	sent                           atomic.Int64          // publishes sent by this run, acknowledged or not
	stopTold                       atomic.Bool           // the stop of the publishing at a cancel was told (withdraw)
	unconfirmed                    atomic.Int64          // publishes sent whose acknowledgement did not come (interrupted)
	unknown                        atomic.Int64          // rows not published that may have been stored all the same (noteUnpublished)
	unread                         atomic.Int64          // rows to publish that the publishing has not reached yet (toPublish)
	pubErr                         atomic.Pointer[error] // first publish error, of any type (notePubErr)
	ahead                          atomic.Int64          // the tenant's backlog served before the campaign's end
	aheadUnread                    atomic.Int64          // the rows not published yet when ahead was read
	aheadRead                      atomic.Bool           // ahead was read at least once (refreshAhead)
	paused                         atomic.Bool           // an operator paused the campaign's priority, and it is not cancelled
	noWorker                       atomic.Bool           // no worker has announced the tenant lately (workersOf)
	stateErr                       atomic.Value
	checked                        atomic.Bool       // results are checked against the CSV's devices as they come
	waiting                        []bool            // by row: a request of it waits in the request stream; set before publishing
	toPublish                      []bool            // by row: neither answered nor waiting when the publishing started
	answeredAtStart                []bool            // by row: answered when the publishing started (answered before)
	marks                          *campaign.Watcher // the campaign marks, set before publishing
	progress                       progress          // shows the progress, set before publishing

	// seqMu guards own, held and beyond: which result invalid_request is a
	// row's (campaign.ResultRow), and which requests past the CSV's end
	// are answered (checkCut).
	seqMu sync.Mutex
	own   []uint64                    // by row: its request's place in the request stream; 0: not known
	held  map[uint64]*offboard.Result // invalid_request results of rows at no place known yet, by requestSeq
	// beyond: the requests past the CSV's end, of the campaign's source,
	// found waiting (earlierWaiting.beyond), less those a result answers.
	beyond map[uint64]int

	// againFor is publishAgainFor, shorter in tests.
	againFor time.Duration
	// unansweredSince is when the run's publishes went unanswered, since
	// the last one answered (collectAcks's alone); zero while answered.
	unansweredSince time.Time

	seed    maphash.Seed
	devices []uint64      // the CSV's devices, hashed (readCSV)
	repeats string        // the warning of rows naming an earlier row's device; "": none (noteRepeats)
	pace    campaign.Pace // the quota's pace of the backlog last read (snapshot)

	// movedMu guards moved: an earlier request of a device the CSV lists
	// at other rows (noteMoved).
	movedMu sync.Mutex
	moved   map[uint64]movedDevice
}

func newCampaignRun(c *cli, f runFlags) (*campaignRun, error) {
	if err := checkTenant(f.tenant); err != nil {
		return nil, err
	}
	if f.csv == "" {
		return nil, usagef("--csv is required")
	}
	if err := checkCSVFile(f.csv); err != nil {
		return nil, err
	}
	if f.name == "" {
		f.name = campaign.NameFromFile(f.csv)
		if !campaign.ValidName(f.name) {
			return nil, usagef("--csv %s gives no valid campaign name (%q); give one with --name", f.csv, f.name)
		}
	}
	if err := checkName(f.name); err != nil {
		return nil, err
	}
	r := &campaignRun{c: c, f: f, prio: offboard.Priority(f.priority), windows: campaign.DefaultWindows,
		set: campaign.Settings{Tenant: f.tenant, Name: f.name, Comment: f.comment, DryRun: f.dryRun, IgnoreLastSeen: f.ignoreLastSeen}}
	if r.prio != offboard.Bulk && r.prio != offboard.Normal {
		return nil, usagef("--priority %s: want bulk or normal", offboard.Quote(f.priority))
	}
	if err := r.set.CheckComment(); err != nil {
		return nil, usagef("--comment: %v", err)
	}
	if f.rate != "" {
		ws, err := campaign.ParseWindows(f.rate)
		if err != nil {
			return nil, usageError{err}
		}
		r.windows = ws
	}
	if r.f.report == "" {
		r.f.report = f.name + "-report.csv"
	}
	if err := f.checkPace(); err != nil {
		return nil, err
	}
	src, err := snapshotCSV(f.csv, f.name)
	if err != nil {
		return nil, err
	}
	r.src = src
	if err := r.readCSV(); err != nil {
		r.close()
		return nil, usagef("%s: %w", f.csv, err)
	}
	if err := r.noteRepeats(); err != nil {
		r.close()
		return nil, usagef("%s: %w", f.csv, err)
	}
	if err := checkReportPath(r.f.report, f.csv); err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

// maxPendingLimit bounds --max-pending: a channel of that many waiting
// acknowledgements is made at once, and a larger one ran out of memory.
const maxPendingLimit = 1 << 16

// checkPace refuses a --timeout, --progress-every or --max-pending out of
// range.
func (f runFlags) checkPace() error {
	switch {
	case f.timeout < 0:
		return usagef("--timeout %v: want a positive duration, or 0 to wait for every result", f.timeout)
	case f.every <= 0:
		return usagef("--progress-every %v: want a positive duration", f.every)
	case f.maxPending < 1 || f.maxPending > maxPendingLimit:
		return usagef("--max-pending must be from 1 to %d", maxPendingLimit)
	}
	return nil
}

// snapshotCSV copies the campaign's CSV to a private temporary file,
// which the run reads from then on (it reads the rows more than once):
// the rows it checks, publishes and reports are the file's as it was when
// the run started, whatever is saved over it meanwhile. A CSV that cannot
// be opened or read is bad usage.
func snapshotCSV(path, name string) (string, error) {
	in, err := os.Open(path)
	if err != nil {
		return "", usagef("--csv %s: %w", path, withoutPath(err))
	}
	defer func() { _ = in.Close() }()
	out, err := os.CreateTemp("", "offboardctl-"+name+"-*.csv")
	if err != nil {
		return "", fmt.Errorf("copy of the CSV: %w", err)
	}
	src := &readErrs{r: in}
	n, err := io.Copy(out, io.LimitReader(src, campaign.MaxCSVSize+1))
	if err == nil && n > campaign.MaxCSVSize {
		// It grew since it was checked.
		src.err = fmt.Errorf("--csv %s is more than %d MiB: split the campaign", path, campaign.MaxCSVSize>>20)
		err = src.err
	}
	if err = errors.Join(err, out.Close()); err != nil {
		_ = os.Remove(out.Name())
		if src.err != nil {
			return "", usageError{src.err} // an unreadable CSV
		}
		return "", fmt.Errorf("copy of %s: %w", path, err)
	}
	return out.Name(), nil
}

// readErrs keeps the error of a read, to tell a CSV that cannot be read
// (bad usage) from a copy that cannot be written.
type readErrs struct {
	r   io.Reader
	err error
}

func (e *readErrs) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		e.err = err
	}
	return n, err
}

// close removes the run's copy of the CSV.
func (r *campaignRun) close() { _ = os.Remove(r.src) }

// checkReportPath refuses, before anything is published, a report that could
// not be written at the end, or that would replace the campaign's CSV.
func checkReportPath(report, csv string) error {
	ra, err := filepath.Abs(report)
	if err != nil {
		return usagef("--report %s: %v", report, err)
	}
	ca, err := filepath.Abs(csv)
	if err != nil {
		return usagef("--csv %s: %v", csv, err)
	}
	if ra == ca {
		return usagef("--report %s is the CSV itself; give another file", report)
	}
	if fi, err := os.Stat(report); err == nil {
		if ci, err := os.Stat(csv); err == nil && os.SameFile(fi, ci) {
			return usagef("--report %s is the CSV itself; give another file", report)
		}
	}
	return checkOutputFile("--report", report)
}

// checkOutputFile refuses, before any work, a file that could not be
// written at the end: a directory, or a file in a directory that cannot
// be written in. The file is written next to its final name, then
// renamed: that directory is tried now. The rename replaces whatever has
// the name, so an existing name that is not a regular file is refused
// too: a device, a FIFO or a socket would become a regular file, and a
// symbolic link would be replaced, not written through.
func checkOutputFile(flag, path string) error {
	if err := checkReplaceable(flag, path); err != nil {
		return usageError{err}
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".check.*")
	if err != nil {
		return usagef("%s %s: cannot write in %s: %v", flag, path, dir, errors.Unwrap(err))
	}
	_ = tmp.Close()
	_ = os.Remove(tmp.Name())
	return nil
}

// checkReplaceable refuses an existing path that is not a regular file
// (os.Lstat: a symbolic link is not followed); a path that does not
// exist yet is fine.
func checkReplaceable(flag, path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil //nolint:nilerr // missing: it is created; unreadable: the write in its directory is tried next
	}
	switch m := fi.Mode(); {
	case m.IsRegular():
		return nil
	case m.IsDir():
		return fmt.Errorf("%s %s is a directory; give a file", flag, path)
	case m&os.ModeSymlink != 0:
		return fmt.Errorf("%s %s is a symbolic link, which the file would replace; give the path of a regular file", flag, path)
	default:
		return fmt.Errorf("%s %s is %s, not a regular file, and the file would replace it; give a regular file", flag, path, fileKind(m))
	}
}

// fileKind names a file type that is not a regular file.
func fileKind(m os.FileMode) string {
	switch {
	case m&os.ModeNamedPipe != 0:
		return "a named pipe"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a device"
	}
	return "a special file"
}

// checkCSVFile refuses, before it is opened, a CSV that is not a regular
// file: it is read more than once, and a pipe (--csv <(...)) would be
// empty the second time, a FIFO would block in its open, and a device such
// as /dev/zero would be read until memory ran out. A symbolic link to a
// file is fine; a path that cannot be read is told by its open.
func checkCSVFile(path string) error {
	if strings.Contains(path, "://") {
		// A NATS URL given to the wrong flag: the path is quoted by
		// every error about the file, password and all.
		return usagef("--csv: a URL, not a file; give the CSV's path, such as --csv devices.csv")
	}
	fi, err := os.Stat(path)
	if err != nil && path == "-" {
		// Not standard input, which a pipe feeds once.
		return usagef("--csv -: the CSV is not read from standard input, as it is read more than once; save it to a file first")
	}
	if err != nil {
		return nil //nolint:nilerr // told by the open that follows
	}
	switch m := fi.Mode(); {
	case m.IsRegular() && fi.Size() > campaign.MaxCSVSize:
		return usagef("--csv %s is %d bytes, more than %d MiB: split the campaign", path, fi.Size(), campaign.MaxCSVSize>>20)
	case m.IsRegular():
		return nil
	case m.IsDir():
		return usagef("--csv %s is a directory; give a file", path)
	default:
		return usagef("--csv %s is %s, not a regular file: the CSV is read more than once; save it to a file first", path, fileKind(m))
	}
}

// readCSV reads the whole CSV once, so that a broken file stops the run
// before anything is published: the progress knows the total, and each
// row's device is kept hashed (deviceOf), 8 bytes a row, devices[n] row
// n's, to check earlier runs' requests and results against.
func (r *campaignRun) readCSV() error {
	r.seed, r.devices, r.moved = maphash.MakeSeed(), []uint64{0}, map[uint64]movedDevice{}
	err := r.eachRow(func(row campaign.Row) (bool, error) {
		if len(r.devices) > campaign.MaxRows {
			return false, fmt.Errorf("more than %d rows; split the campaign", campaign.MaxRows)
		}
		if err := r.checkLastSeen(row); err != nil {
			return false, err
		}
		r.devices = append(r.devices, maphash.String(r.seed, deviceOf(row.MachineID, row.ComputerDNSName)))
		return true, nil
	})
	r.total = len(r.devices) - 1
	return err
}

// checkLastSeen refuses, before anything is published, a CSV with a
// lastSeen cell that is no time, unless --ignore-last-seen: a plan's
// file a spreadsheet saved in its locale's form (6/10/2026 15:52) has
// such a cell in every row, each row would be invalid, and the
// campaign would run to offboard nothing. A row that repeats the header
// (two plans' files joined) is named as such.
func (r *campaignRun) checkLastSeen(row campaign.Row) error {
	if r.f.ignoreLastSeen || row.LastSeen == "" {
		return nil
	}
	if row.HeaderAgain() {
		return fmt.Errorf("line %d repeats the header row (files joined?): remove it (a plan's lastSeen column is each row's premise; --ignore-last-seen leaves it out)", row.Line)
	}
	if _, err := campaign.ParseLastSeen(row.LastSeen); err != nil {
		return fmt.Errorf("line %d: %w: write it as campaign plan did (2026-06-10T15:52:54.1234567Z; a spreadsheet's 2026-06-10 15:52:54 is taken as UTC), plan again, or give --ignore-last-seen to offboard each device whenever it was seen last", row.Line, err)
	}
	return nil
}

func (r *campaignRun) run(ctx context.Context) error {
	if _, err := r.c.connect(ctx); err != nil {
		// Interrupted while the CSV was read (a large one takes seconds)
		// or while connecting: told as the stop it is, not as a
		// connection that failed.
		return r.beforeStart(ctx, err)
	}
	ctx, released := r.c.whileConnected(ctx)
	defer released()
	js, err := jetstream.New(r.c.nc, jetstream.WithPublishAsyncMaxPending(r.f.maxPending),
		jetstream.WithPublishAsyncTimeout(publishAckWait))
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	r.js = js
	if err := r.readTenant(ctx); err != nil {
		return r.beforeStart(ctx, err)
	}
	if err := r.recordStart(ctx); err != nil {
		return r.beforeStart(ctx, err)
	}
	// The requests first, then the results: a request leaves the stream
	// only once its result is stored, so each row's earlier request is
	// seen in one or the other. This reads the tenant's whole backlog (a
	// second or so per 100,000 requests waiting), before --timeout starts:
	// it bounds the publishing and the wait for results.
	otherWaiting, err := r.otherRunWaiting(ctx)
	if err != nil {
		return r.beforeStart(ctx, err)
	}
	r.own, r.held, r.beyond = otherWaiting.seqs, map[uint64]*offboard.Result{}, otherWaiting.beyond
	if r.f.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, r.f.timeout, &flagTimeout{r.f.timeout})
		defer cancel()
	}
	if r.rows, err = campaign.NewRows(r.f.name, r.total, ""); err != nil {
		return err
	}
	defer func() { _ = r.rows.Close() }()
	fol, err := follow(ctx, js, offboard.StreamResults, r.c.subjects.Result(r.f.tenant), r.onResult)
	if err != nil {
		return r.beforeStart(ctx, err)
	}
	defer fol.stop(ctx)
	if err := fol.wait(ctx); err != nil {
		return r.beforeStart(ctx, err)
	}
	if err := r.beforePublishing(otherWaiting); err != nil {
		return err
	}
	stopWatch, err := r.watchCancel(ctx)
	if err != nil {
		return r.beforeStart(ctx, err)
	}
	defer stopUnlessEnded(ctx, stopWatch)
	if err := r.readyToPublish(); err != nil {
		return err
	}
	waitErr := r.publishAndWait(ctx)
	return r.finish(waitErr)
}

// readyToPublish refuses a CSV cut short while requests of its campaign
// past its end wait (checkCut), unless the campaign is cancelled: those
// are answered cancelled, and offboard nothing. Then it warns of the rows
// that name an earlier row's device: once the run is sure to publish, so
// that a refused run's error stays its one line.
func (r *campaignRun) readyToPublish() error {
	if !r.cancelledNow() {
		if err := r.checkCut(); err != nil {
			return err
		}
	}
	if r.repeats != "" {
		fmt.Fprintln(r.c.stderr, "offboardctl:", r.repeats)
	}
	return nil
}

// beforeStart tells an error of the steps before publishing that came of
// the run's end (an interrupt, --timeout, the connection closed for good)
// as that end: nothing was published and no report written, which the
// error of the read cut short ("context canceled") did not say.
func (r *campaignRun) beforeStart(ctx context.Context, err error) error {
	if ctx.Err() == nil {
		return err
	}
	return fmt.Errorf("campaign %s: stopped before publishing (%w): nothing published, no report written; run the same command again",
		r.f.name, context.Cause(ctx))
}

// readTenant refuses a tenant no worker has set up, unless
// --unknown-tenant: a typo's rows would go where no worker serves, each
// answered unknown_tenant, a dead letter each. Without --rate, it reads
// the tenant's offboard limits for the ETA (campaignWindows).
func (r *campaignRun) readTenant(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.c.timeout)
	defer cancel()
	if !r.f.unknownTenant {
		if err := knownTenant(ctx, r.js, r.f.tenant, "nothing published", "publishes to it"); err != nil {
			return err
		}
	}
	if r.f.rate != "" {
		return nil
	}
	r.windows = r.c.campaignWindows(ctx, r.js, r.f.tenant, nil)
	return nil
}

// recordStart records in the control bucket that a run of the campaign
// started (campaign.MarkStarted), before the backlog is read, which takes
// a while: a campaign cancel issued meanwhile finds the campaign, and the
// run publishes nothing (watchCancel).
func (r *campaignRun) recordStart(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.c.timeout)
	defer cancel()
	kv, err := r.controlBucket(ctx)
	if err != nil {
		return err
	}
	if err := campaign.MarkStarted(ctx, kv, r.f.tenant, r.f.name, defaultUser(), time.Now().UTC()); err != nil {
		return fmt.Errorf("campaign %s: %w; nothing published", r.f.name, err)
	}
	return nil
}

// controlBucket opens the control bucket, making it when it does not
// exist, as campaign cancel does (the worker's definition): a cancel makes
// the bucket it marks, and a run that had found none followed no mark and
// published every row of the cancelled campaign. A run that can neither
// open nor make it could not see a cancel: it publishes nothing.
func (r *campaignRun) controlBucket(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := campaign.ControlBucket(ctx, r.js)
	if err != nil {
		return nil, fmt.Errorf("campaign %s: %w: a cancel could not be followed (the worker's setup or deploy/nats makes the bucket); nothing published", r.f.name, err)
	}
	return kv, nil
}

// beforePublishing checks the earlier runs' results and waiting requests
// (otherWaiting) against the CSV, once the results stored were read, and
// makes the rows whose retry waits wait for it.
func (r *campaignRun) beforePublishing(otherWaiting earlierWaiting) error {
	// From here on each result is checked as it comes (onResult);
	// checkEarlierResults checks those recorded before.
	r.checked.Store(true)
	if err := r.checkEarlierResults(); err != nil {
		return err
	}
	if err := r.checkWaitingRequests(otherWaiting); err != nil {
		return err
	}
	if err := r.checkMoved(otherWaiting.rows); err != nil {
		return err
	}
	if err, _ := r.stateErr.Load().(error); err != nil {
		return err
	}
	// A row retried (dead retry) whose retry still waits is answered by
	// the retry's result, not by the earlier attempt's failure; a row
	// created, already_pending or dry_run keeps its result, which is all
	// the retry is answered with (Rows.Retrying). A row with a request
	// waiting is not published again (publishRow).
	for n, attempt := range otherWaiting.retries {
		r.rows.Retrying(n, attempt)
	}
	r.waiting = otherWaiting.rows
	return nil
}

// watchCancel follows the campaign's cancel mark, so that a run still
// publishing when its campaign is cancelled publishes no more rows: a row
// with a source of its own published after the cancel would not be
// withdrawn (campaign.Watcher.Cancelled). It returns once it has read
// the marks stored now: a run of a campaign cancelled before publishes
// nothing. The watch is the workers' own: it is read anew when the
// connection to NATS is made again, whose server may have lost it, and
// when the bucket is made again.
func (r *campaignRun) watchCancel(ctx context.Context) (stop func(), err error) {
	kv, err := r.controlBucket(ctx)
	if err != nil {
		return nil, err
	}
	if r.marks, err = campaign.WatchBucket(ctx, kv, r.js.Conn(), nil); err != nil {
		return nil, fmt.Errorf("watch campaign %s's mark: %w", r.f.name, err)
	}
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { r.marks.Run(wctx) })
	return func() {
		cancel()
		wg.Wait()
	}, nil
}

// cancelledNow says whether the campaign's cancel mark was read: no more
// rows are published.
func (r *campaignRun) cancelledNow() bool {
	return r.marks != nil && r.marks.CampaignCancelled(r.f.tenant, r.f.name)
}

// openCSV opens the campaign's CSV for a read from its first row; the
// returned func closes it.
func (r *campaignRun) openCSV() (*campaign.Reader, func(), error) {
	f, err := os.Open(r.src)
	if err != nil {
		return nil, nil, err
	}
	rd, err := campaign.NewReader(f)
	if err != nil {
		_ = f.Close()
		return nil, nil, err
	}
	return rd, func() { _ = f.Close() }, nil
}

// eachRow reads the campaign's CSV (its own copy) from its first row
// and calls fn with each row until the last, or until fn returns false
// or an error, which eachRow returns.
func (r *campaignRun) eachRow(fn func(campaign.Row) (bool, error)) error {
	rd, closeCSV, err := r.openCSV()
	if err != nil {
		return err
	}
	defer closeCSV()
	for {
		row, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if more, err := fn(row); !more || err != nil {
			return err
		}
	}
}

// checkEarlierResults refuses, before anything is published, a run whose
// stored results (from an earlier run under the same name) name another
// device than the CSV's row: its request id is taken, and the report
// would name the wrong device. It refuses too a real run where a row has
// a dry_run result, and a dry run where a row has a created or
// already_pending one: the worker answers a request id from its ledger,
// so the run would only be given the earlier run's results. A failed
// result does not say whether it was a dry run; it is kept either way.
func (r *campaignRun) checkEarlierResults() error {
	return r.eachRow(func(row campaign.Row) (bool, error) {
		if !r.rows.Has(row.N) {
			return true, nil
		}
		other, err := r.rows.OtherDevice(row)
		if err != nil {
			return false, err
		}
		if other != "" {
			return false, usagef("row %d (%s) names %q, but campaign %s already has a result for that row naming %q: it was run before with another CSV; give this one a new --name",
				row.N, campaign.RequestID(r.f.name, row.N), cmp.Or(row.MachineID, row.ComputerDNSName), r.f.name, other)
		}
		switch o := r.rows.Outcome(row.N); {
		case !otherKindOfRun(r.f.dryRun, o):
			return true, nil
		case !r.f.dryRun:
			return false, usagef("row %d (%s) already has a dry_run result: campaign %s was run with --dry-run, and a real run under its name would only be answered dry_run again; give the real run a new --name",
				row.N, campaign.RequestID(r.f.name, row.N), r.f.name)
		default:
			return false, usagef("row %d (%s) already has a %s result: campaign %s was run without --dry-run, and a dry run under its name would only be answered with those results; give the dry run a new --name",
				row.N, campaign.RequestID(r.f.name, row.N), o, r.f.name)
		}
	})
}

// earlierWaiting is what otherRunWaiting finds of an earlier run's
// requests still waiting: the first row (0: none) whose request has the
// other --dry-run than this run's, and the first whose request names
// another device than the CSV's row, with that device.
type earlierWaiting struct {
	otherDryRun, otherDevice int
	device                   string
	retries                  map[int]int    // row: the highest attempt of its retries waiting (dead retry)
	rows                     []bool         // by row: a request of it waits
	seqs                     []uint64       // by row: the place of its request waiting (of its latest attempt); 0: none
	beyond                   map[uint64]int // by place in the request stream: the row past the CSV's end of a request waiting, of the campaign's source, not --dry-run
}

// otherRunWaiting reads the requests of earlier runs under the same name
// that still wait in the request stream, unanswered, and finds those of
// the CSV's rows that this run could not take as its own (earlierWaiting).
func (r *campaignRun) otherRunWaiting(ctx context.Context) (earlierWaiting, error) {
	w := earlierWaiting{retries: map[int]int{}, rows: make([]bool, r.total+1), seqs: make([]uint64, r.total+1), beyond: map[uint64]int{}}
	err := campaignRequests(ctx, r.js, r.c.subjects, r.f.tenant, r.f.name, func(_ offboard.Priority, row, attempt int, m jetstream.Msg) {
		// A copy that fails the request's checks, or names another
		// request id in its body, is answered apart from the row
		// (ResultRow): it is not the row's request, and the row is
		// published all the same.
		req, err := offboard.ParseRequest(m.Data(), r.f.tenant)
		if err != nil || req.RequestID != campaign.RequestID(r.f.name, row) {
			return
		}
		// A row beyond the CSV's end too: its device may be listed at
		// another row now.
		r.noteMoved(row, req.MachineID, req.ComputerDNSName, req.Source)
		if row > r.total {
			// Only a request of the campaign's source is its own (a
			// CMDB's inc-004711 is not campaign inc's row); a --dry-run
			// one offboards nothing (checkCut).
			if meta, err := m.Metadata(); err == nil && req.Source == campaign.Source(r.f.name) && !req.DryRun {
				w.beyond[meta.Sequence.Stream] = row
			}
			return
		}
		w.rows[row] = true
		if attempt > 1 {
			w.retries[row] = max(w.retries[row], attempt)
		}
		if meta, err := m.Metadata(); err == nil && attempt >= max(w.retries[row], 1) {
			w.seqs[row] = meta.Sequence.Stream
		}
		if req.DryRun != r.f.dryRun && (w.otherDryRun == 0 || row < w.otherDryRun) {
			w.otherDryRun = row
		}
		if maphash.String(r.seed, deviceOf(req.MachineID, req.ComputerDNSName)) != r.devices[row] && (w.otherDevice == 0 || row < w.otherDevice) {
			w.otherDevice, w.device = row, cmp.Or(req.MachineID, req.ComputerDNSName)
		}
	})
	return w, err
}

// deviceOf is the device a row or a request names, as the worker takes
// it: by its machineId when it has one, else by its computerDnsName;
// case-insensitive, a name's final dot aside.
func deviceOf(machineID, computerDNSName string) string {
	if id := strings.TrimSpace(machineID); id != "" {
		return "machineId " + strings.ToLower(id)
	}
	return "computerDnsName " + strings.ToLower(strings.TrimSuffix(strings.TrimSpace(computerDNSName), "."))
}

// movedDevice is an earlier request of the campaign's name (row earlier,
// a result stored or a request waiting) naming device, which the CSV
// lists at other rows than that one.
type movedDevice struct {
	earlier int
	device  string
}

// noteMoved notes an earlier request of row n, a result stored or a
// request waiting, which names machineID or computerDNSName, when the CSV
// does not list that device at row n (checkMoved looks for it at the
// others); by the device's hashes, by id and by name, the earliest such
// request kept. A CSV that lists the device at row n is the same CSV
// again: its other rows of the device were published with row n's. A
// rerun of the same CSV notes nothing: the memory is that of the rows
// that moved. Beyond the CSV's end, only a request of the campaign's
// source is the campaign's: one that merely has the id form of a row
// (a CMDB's inc-004711, when the campaign is inc) is another's.
func (r *campaignRun) noteMoved(n int, machineID, computerDNSName, source string) {
	if n > r.total && source != campaign.SourcePrefix+r.f.name {
		return
	}
	var hs []uint64
	if strings.TrimSpace(machineID) != "" {
		hs = append(hs, maphash.String(r.seed, deviceOf(machineID, "")))
	}
	if strings.TrimSpace(computerDNSName) != "" {
		hs = append(hs, maphash.String(r.seed, deviceOf("", computerDNSName)))
	}
	for _, h := range hs {
		if n <= r.total && r.devices[n] == h {
			return // listed at its row
		}
	}
	r.movedMu.Lock()
	defer r.movedMu.Unlock()
	for _, h := range hs {
		if m, ok := r.moved[h]; !ok || n < m.earlier {
			r.moved[h] = movedDevice{earlier: n, device: cmp.Or(machineID, computerDNSName)}
		}
	}
}

// checkMoved refuses, before anything is published, a run whose CSV lists
// a device at a row without a request yet (neither answered nor waiting),
// when an earlier request of the campaign's name at another row was for
// it (noteMoved): the row's request id is new, and its request would
// offboard the device a second time (an invalid row deleted, say, moves
// every row after it up one). waiting is by row: a request of it waits.
func (r *campaignRun) checkMoved(waiting []bool) error {
	r.movedMu.Lock()
	defer r.movedMu.Unlock()
	if len(r.moved) == 0 {
		return nil
	}
	for n := 1; n <= r.total; n++ {
		m, ok := r.moved[r.devices[n]]
		if !ok || r.rows.Has(n) || waiting[n] {
			continue
		}
		return usagef("row %d (%s) names %q, which campaign %s requested before as row %d (%s): it was run before with another CSV, "+
			"and the row's request would offboard the device again; give this one a new --name",
			n, campaign.RequestID(r.f.name, n), m.device, r.f.name, m.earlier, campaign.RequestID(r.f.name, m.earlier))
	}
	return nil
}

// checkCut refuses, before anything is published, a run whose CSV ends
// before a row whose request, of the campaign's source and not a dry
// run's, still waits unanswered (r.beyond): the CSV was cut short after
// an earlier run published the rows cut. Their requests still offboard their devices,
// which the CSV no longer lists, and no report would tell their outcome:
// the run ended as if the campaign were whole. A request answered stays
// in the stream a while (a worker stopped between its ack and its delete,
// until the sweep), and one may be answered since it was read: its
// result, read by now, spares it.
func (r *campaignRun) checkCut() error {
	r.seqMu.Lock()
	beyond := 0
	for _, row := range r.beyond {
		if beyond == 0 || row < beyond {
			beyond = row
		}
	}
	r.seqMu.Unlock()
	if beyond == 0 {
		return nil
	}
	return usagef("row %d (%s) of campaign %s has a request still waiting, past this CSV's %d rows: it was run before with a longer CSV, and that request will still offboard its device; "+
		"put the rows back in the CSV, or withdraw the campaign's waiting requests with offboardctl campaign cancel",
		beyond, campaign.RequestID(r.f.name, beyond), r.f.name, r.total)
}

// checkWaitingRequests refuses, before anything is published, a run
// where a row's request from an earlier run under the same name still
// waits (w, from otherRunWaiting) and names another device than the row
// (the CSV changed since), or has the other --dry-run: the run's request
// would be dropped as a duplicate of it (same message id), and the row
// answered as that request is: the row's device would not be offboarded
// and the report would give it the other device's result; a real run
// would get dry_run results and offboard nothing, a dry run would report
// the real run's actions as its own.
func (r *campaignRun) checkWaitingRequests(w earlierWaiting) error {
	switch {
	case w.otherDevice != 0:
		// A row cut from the middle moves the rows after it up one: the
		// waiting request is the cut row's, and still offboards its
		// device, whatever the new CSV's name.
		return usagef("row %d (%s) has a request still waiting that names %q, not the row's device: campaign %s was run before with another CSV, and that request will still offboard that device; "+
			"if it is not to be, withdraw the campaign's waiting requests with offboardctl campaign cancel; give this CSV a new --name",
			w.otherDevice, campaign.RequestID(r.f.name, w.otherDevice), w.device, r.f.name)
	case w.otherDryRun == 0:
		return nil
	case r.f.dryRun:
		return usagef("row %d (%s) has a request without --dry-run still waiting: campaign %s was run for real, and a dry run under its name would only be given that request's result; give the dry run a new --name",
			w.otherDryRun, campaign.RequestID(r.f.name, w.otherDryRun), r.f.name)
	default:
		return usagef("row %d (%s) has a --dry-run request still waiting: campaign %s was run with --dry-run, and a real run under its name would only be answered dry_run; give the real run a new --name",
			w.otherDryRun, campaign.RequestID(r.f.name, w.otherDryRun), r.f.name)
	}
}

// onResult records a result of the tenant, when it is one of the campaign's.
// A result invalid_request of a row whose request's place is not known
// yet (its publish not acknowledged yet, or published by an earlier run)
// is held until it is (placed).
func (r *campaignRun) onResult(m jetstream.Msg) {
	res, ok := decodeResult(m)
	if !ok {
		return
	}
	r.seqMu.Lock()
	n, ok := campaign.ResultRow(r.f.name, res, r.ownRequest)
	if row, had := r.beyond[res.RequestSeq]; had && row == n {
		// A request past the CSV's end answered (checkCut).
		delete(r.beyond, res.RequestSeq)
	}
	if _, isRow := campaign.RowOf(r.f.name, res.RequestID); !ok && isRow {
		r.held[res.RequestSeq] = res
	}
	r.seqMu.Unlock()
	if ok {
		r.record(n, res)
	}
}

// ownRequest says whether row n's request is at place seq of the request
// stream; r.seqMu held.
func (r *campaignRun) ownRequest(n int, seq uint64) bool {
	return n < len(r.own) && r.own[n] != 0 && r.own[n] == seq
}

// placed records the place of row n's request in the request stream, from
// its publish's acknowledgement: stored there, or dropped as a duplicate
// of the message there under the row's message id (published before,
// within the duplicate window). A result invalid_request held for that
// place is the row's.
func (r *campaignRun) placed(n int, seq uint64) {
	r.seqMu.Lock()
	if n < len(r.own) {
		r.own[n] = seq
	}
	res := r.held[seq]
	delete(r.held, seq)
	r.seqMu.Unlock()
	if res != nil {
		if m, _ := campaign.RowOf(r.f.name, res.RequestID); m == n {
			r.record(n, res)
		}
	}
}

// record records res as row n's result.
func (r *campaignRun) record(n int, res *offboard.Result) {
	if r.checked.Load() {
		if err := r.notTheRows(n, res); err != nil {
			r.stateErr.CompareAndSwap(nil, notTheRowsError{err})
			return
		}
	} else {
		// Stored before the run: an earlier run's (checkMoved).
		r.noteMoved(n, res.MachineID, res.ComputerDNSName, res.Source)
	}
	if _, err := r.rows.Result(n, res); err != nil {
		r.stateErr.CompareAndSwap(nil, err)
	}
}

// notTheRows says why res, a result of row n's request id, is not the
// row's: it names another device, or it is a dry run's result in a real
// run (a real run's in a dry run). The worker answers a request id from
// its ledger: such a result is an earlier run's under the same name whose
// results are no longer stored (--results-max-age), so that
// checkEarlierResults could not see it, or one of a run of the other
// kind started at the same time, which published the row first. The
// row's device is not offboarded (or, in a dry run, was not checked);
// the result is not reported.
func (r *campaignRun) notTheRows(n int, res *offboard.Result) error {
	if !r.rowsDevice(n, res) {
		return fmt.Errorf("row %d (%s) was answered for %q, not the row's device: campaign %s was run before with another CSV, "+
			"and the worker answers a request id from its ledger; give this one a new --name",
			n, res.RequestID, cmp.Or(res.MachineID, res.ComputerDNSName), r.f.name)
	}
	switch o := res.Outcome; {
	case !otherKindOfRun(r.f.dryRun, o):
	case !r.f.dryRun:
		return fmt.Errorf("row %d (%s) was answered dry_run: campaign %s was also run with --dry-run, and the worker answers a request id from its ledger; "+
			"nothing of this run is offboarded under its name: give the real run a new --name", n, res.RequestID, r.f.name)
	default:
		return fmt.Errorf("row %d (%s) was answered %s: campaign %s was also run without --dry-run, and the worker answers a request id from its ledger; "+
			"give the dry run a new --name", n, res.RequestID, o, r.f.name)
	}
	return nil
}

// otherKindOfRun says whether a row's outcome is one of a run of the
// other kind than dryRun says: dry_run for a real run, created or
// already_pending for a dry run. A failed result does not say which kind
// of run it answered, and stands for either.
func otherKindOfRun(dryRun bool, outcome string) bool {
	if dryRun {
		return outcome == offboard.OutcomeCreated || outcome == offboard.OutcomeAlreadyPending
	}
	return outcome == offboard.OutcomeDryRun
}

// notTheRowsError ends a run whose row was answered with another run's
// result (notTheRows): running the same command again would not help.
type notTheRowsError struct{ error }

func (e notTheRowsError) Unwrap() error { return e.error }

// rowsDevice says whether a result names row n's device: its machine id
// for a row by id, its host name for a row by name. A result that names
// no device (an invalid_request result leaves out the fields that failed
// their checks) names no other.
func (r *campaignRun) rowsDevice(n int, res *offboard.Result) bool {
	if n >= len(r.devices) || res.MachineID == "" && res.ComputerDNSName == "" {
		return true // not one of this CSV's rows, or nothing to compare
	}
	return r.devices[n] == maphash.String(r.seed, deviceOf(res.MachineID, "")) ||
		r.devices[n] == maphash.String(r.seed, deviceOf("", res.ComputerDNSName))
}

// publishAndWait publishes the rows (in the background) and waits for
// every result, showing progress.
func (r *campaignRun) publishAndWait(ctx context.Context) error {
	r.unread.Store(int64(r.countToPublish()))
	r.refreshAhead(ctx)
	// Made before the publishing starts, which tells its notices
	// through it (withdraw).
	p := newProgress(r.c.stdout, r.f.every, r.total)
	r.progress = p
	defer p.finish()
	pubCtx, stopPub := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var pubErr error
	pubDone := make(chan struct{})
	wg.Go(func() { defer close(pubDone); pubErr = r.publishRows(pubCtx) })
	defer wg.Wait()
	// A run that ends before its publishing (a row answered for another
	// device) stops it first, or it published the rest of the CSV.
	defer stopPub()
	started := time.Now()
	base := r.rows.Counts().Answered()
	tick := time.NewTicker(200 * time.Millisecond) // real time: paces the display
	defer tick.Stop()
	lastAhead := time.Now()
	// The end of publishing wakes the wait once; closed, it would wake it
	// at every turn, and the wait would spin.
	published := (<-chan struct{})(pubDone)
	for {
		counts := r.rows.Counts()
		p.show(r.snapshot(counts, counts.Answered()-base, time.Since(started)))
		select {
		case <-pubDone:
			if pubErr != nil && ctx.Err() == nil {
				return pubErr
			}
		default:
		}
		if err := r.stateErr.Load(); err != nil {
			return err.(error)
		}
		if counts.Waiting == 0 && isClosed(pubDone) {
			return nil
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-r.rows.Changed():
		case <-tick.C:
		case <-published:
			published = nil
		}
		if time.Since(lastAhead) >= 5*time.Second {
			r.refreshAhead(ctx)
			lastAhead = time.Now()
		}
	}
}

// countToPublish marks and counts the rows the publishing is to send:
// those without a result and without a request waiting. A row answered
// before is done, and one waiting is in the tenant's backlog already:
// counted among the rows not published as well, a run again estimated
// its end as if it had the whole CSV still to publish.
func (r *campaignRun) countToPublish() int {
	r.toPublish, r.answeredAtStart = make([]bool, r.total+1), make([]bool, r.total+1)
	n := 0
	for row := 1; row <= r.total; row++ {
		r.answeredAtStart[row] = r.rows.Has(row)
		if !r.answeredAtStart[row] && !r.waiting[row] {
			r.toPublish[row] = true
			n++
		}
	}
	return n
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// refreshAhead reads the tenant's backlog that is served before the
// campaign's end: normal priority (unless it is paused, for a bulk
// campaign: bulk goes on meanwhile), bulk too for a bulk campaign; and
// whether a pause holds the campaign's rows, which it does not once the
// campaign is cancelled.
func (r *campaignRun) refreshAhead(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	// With no worker, the ETA is what the rows take once one runs: the
	// progress says so, as status does, where it showed that time as if
	// a worker were at them. Not known (the presence bucket not read):
	// nothing said.
	_, none := workersOf(readAnnounced(ctx, r.js), r.f.tenant, time.Now())
	r.noWorker.Store(none)
	view, horizon, err := readControls(ctx, r.js, r.c.subjects)
	if err != nil {
		return // no estimate update; the last one stands
	}
	// A pause holds no request of a cancelled campaign: the worker
	// answers them cancelled, paused or not, as campaign status counts.
	r.paused.Store(view.Paused(r.f.tenant, r.prio) && !r.cancelledNow())
	// Read before the backlog: a row published in between counts twice
	// (the estimate errs long), never not at all.
	unread := r.unread.Load()
	var prios []offboard.Priority
	for _, p := range []offboard.Priority{offboard.Normal, offboard.Bulk} {
		if aheadOf(p, map[offboard.Priority]int{r.prio: 1}, view.Paused(r.f.tenant, offboard.Normal)) {
			prios = append(prios, p)
		}
	}
	var waiting, inFlight uint64
	var infos []*jetstream.ConsumerInfo
	for _, p := range prios {
		w, f, info, err := backlog(ctx, r.js, r.f.tenant, p)
		if err != nil {
			return // no estimate update; the last one stands
		}
		waiting, inFlight, infos = waiting+w, inFlight+f, append(infos, info)
	}
	// A cancelled campaign's requests waiting, this one's included, are
	// answered without a call.
	waiting -= min(uint64(withdrawnAhead(ctx, r.js, r.marks, r.f.tenant, infos, "")), waiting) //nolint:gosec // not negative
	r.ahead.Store(int64(waiting + inFlight))
	r.aheadUnread.Store(unread)
	r.aheadRead.Store(true)
	r.refreshQuota(ctx, int(min(waiting, 1<<40))+int(unread), int(min(inFlight, 1<<40)))     //nolint:gosec // bounded
	r.refreshBudget(ctx, view, horizon, int(min(waiting, 1<<40)), int(min(inFlight, 1<<40))) //nolint:gosec // bounded
}

// refreshQuota reads the tenant's offboard calls in the quota journal and
// when, at the earliest, the quota lets the backlog ahead (waiting in the
// stream, and in flight) and the rows not published yet go after them
// (journalETA): once per read of the backlog, not at each progress. A
// journal that cannot be read leaves the windows counted from empty, as
// the backlog just read has another count than the last ETA's.
func (r *campaignRun) refreshQuota(ctx context.Context, waiting, inFlight int) {
	now := time.Now()
	d, err := r.c.journalETA(ctx, r.js, r.f.tenant, r.windows, waiting, inFlight, now)
	if err != nil {
		r.quota.Store(nil)
		return
	}
	r.quota.Store(&etaRead{at: now, eta: d})
}

// refreshBudget reads the tenant's budget in force and when, at the
// earliest, it lets the backlog ahead (waiting in the stream, and in
// flight) and the rows not published yet create their actions (each
// counted as one). A dry run's own rows take no slot, but wait like any
// request while the budget is spent: they count as one, the moment a slot
// is free after the requests ahead of them.
func (r *campaignRun) refreshBudget(ctx context.Context, view *control.View, h budgetHorizon, waiting, inFlight int) {
	now := time.Now()
	pace, err := r.c.tenantBudget(ctx, r.js, r.f.tenant, view, h, now)
	switch {
	case err != nil:
		return // the last one stands
	case pace == nil:
		r.budget.Store(nil)
		return
	}
	unread := int(r.unread.Load())
	if r.f.dryRun {
		// The run's rows published and unanswered, in the stream or in
		// flight: taken from those waiting first.
		own := max(r.rows.Counts().Waiting-unread, 0)
		fromWaiting := min(own, waiting)
		waiting, inFlight, unread = waiting-fromWaiting+1, max(inFlight-(own-fromWaiting), 0), 0
	}
	r.budget.Store(&etaRead{at: now, eta: pace.eta(waiting+unread, inFlight, now)})
}

// etaRead is the budget's or the quota's ETA as read at a time. A
// duration, not an end time: a slow budget's end past the year 2262 is
// more than a Unix time in nanoseconds holds, and held to it would read
// shorter than status's ETA for the same budget, the longest duration
// there is.
type etaRead struct {
	at  time.Time
	eta time.Duration
}

// left is the ETA now; the longest stays the longest, as in status.
func (b *etaRead) left() time.Duration {
	if b.eta == math.MaxInt64 {
		return b.eta
	}
	return b.eta - time.Since(b.at)
}

func (r *campaignRun) snapshot(c campaign.Counts, seen int, elapsed time.Duration) progressSnapshot {
	// The rows not published when the backlog was read: those published
	// since are in the stream, but not yet in ahead.
	est := campaign.Estimate{Ahead: int(r.ahead.Load()), Unpublished: int(r.aheadUnread.Load()), Done: seen, Elapsed: elapsed, Windows: r.windows, Pace: &r.pace}
	if q := r.quota.Load(); q != nil {
		est.Quota = q.left()
	}
	eta, byBudget, known := est.ETA(), false, est.Known()
	if !r.aheadRead.Load() {
		// No read of the backlog has finished yet (NATS slow to answer
		// within refreshAhead's bound): nothing counted ahead is not
		// nothing ahead, and an ETA of 0s while the window is full is
		// wrong (TestCampaignETAUnknownUntilTheBacklogIsRead).
		known = false
	}
	if c.Waiting == 0 {
		// Every row is answered: the tenant's backlog is not the campaign's.
		eta, known = 0, true
	}
	// Never shorter than the budget allows, while rows wait.
	if bu := r.budget.Load(); bu != nil && c.Waiting > 0 {
		if b := bu.left(); b > eta {
			eta, byBudget, known = b, true, true
		}
	}
	s := progressSnapshot{name: r.f.name, tenant: r.f.tenant, counts: c, published: r.published.Load(),
		duplicates: r.duplicates.Load(), eta: eta, etaUnknown: !known, paused: r.paused.Load(), byBudget: byBudget, noWorker: r.noWorker.Load()}
	if r.c != nil {
		s.lostFor, s.lost = r.c.lostFor(time.Now())
		s.server = queue.RedactURLs(r.c.conn.URL)
	}
	return s
}

// publishRows publishes every row that has no result yet, asynchronously
// with at most --max-pending acknowledgements outstanding; an invalid row
// is recorded failed and not published.
func (r *campaignRun) publishRows(ctx context.Context) error {
	rd, closeCSV, err := r.openCSV()
	if err != nil {
		return err
	}
	defer closeCSV()
	acks := make(chan pendingAck, r.f.maxPending)
	var wg sync.WaitGroup
	wg.Go(func() { r.collectAcks(ctx, acks) })
	defer wg.Wait()
	defer close(acks)
	subject := r.c.subjects.Request(r.f.tenant, r.prio)
	for ctx.Err() == nil {
		row, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if row.N < len(r.toPublish) && r.toPublish[row.N] {
			r.unread.Add(-1)
		}
		if err := r.publishRow(ctx, subject, row, acks); err != nil {
			return err
		}
	}
	return nil
}

type pendingAck struct {
	row int
	f   jetstream.PubAckFuture
	// again: the row was published again after its acknowledgement did
	// not come (publishAgain).
	again bool
}

// publishAckWait bounds the wait for a publish's acknowledgement, after
// which the row is published again (publishAgain). On a cluster, a
// publish that reached the request stream's leader as it went down is
// never answered: the wait is what the run loses then. A healthy server
// answers within milliseconds; one published again that had been stored
// is dropped as a duplicate.
const publishAckWait = 5 * time.Second

// publishAgainFor bounds how long rows are published again while no
// publish is answered: past it, a stream that answers none (deleted, or
// without a leader for longer than an election takes) counts the row
// waited on and every later one left unanswered not published, and the
// run ends telling to run it again, as it did before it published again.
// It is the run's, not each row's: counted row by row, as the rows'
// answers are awaited one after the other, a stream gone kept a run of
// N rows for N times 30 s.
const publishAgainFor = 30 * time.Second

// publishAgainPause is the pause before a row whose publish was refused
// at once (no stream answered: a leader being elected) is published
// again.
const publishAgainPause = 250 * time.Millisecond

// publishAgain publishes row p.row's message again, under the same
// message id, after its publish failed with err for want of an answer:
// its acknowledgement did not come (the request stream's leader lost
// with it, on a cluster), the connection was lost before it came, or no
// stream answered (a leader being elected); or the stream was storing
// another publish of the row (another run's, on a cluster: "duplicate
// message id is in process"). The stream drops it as a duplicate if the
// first one was stored. Not once the run is ending
// (ctx), nor once the campaign is cancelled, nor for a refusal (the
// stream's answer, or the server's for a permission: that publish too
// times out), nor past publishAgainFor since the run's publishes went
// unanswered: false then, and the row is counted not published.
func (r *campaignRun) publishAgain(ctx context.Context, p pendingAck, err error) (jetstream.PubAckFuture, bool) {
	if !(unanswered(err) || queue.InProcess(err)) || p.f.Msg() == nil || time.Since(r.unansweredSince) > cmp.Or(r.againFor, publishAgainFor) {
		return nil, false
	}
	if errors.Is(err, jetstream.ErrAsyncPublishTimeout) && r.refused(p) {
		// Refused, not lost: published again, it would be refused
		// again, each row's tries taking the run 30 s in silence.
		return nil, false
	}
	if !errors.Is(err, jetstream.ErrAsyncPublishTimeout) {
		// Failed at once: not at a pace the server cannot answer.
		t := time.NewTimer(publishAgainPause)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, false
		case <-t.C:
		}
	}
	for ctx.Err() == nil && !r.cancelledNow() {
		f, err := r.js.PublishMsgAsync(p.f.Msg())
		switch {
		case err == nil:
			return f, true
		case errors.Is(err, jetstream.ErrTooManyStalledMsgs):
			continue // the server is behind: wait for its acknowledgements
		}
		return nil, false
	}
	return nil, false
}

// unanswered says whether a publish failed for want of an answer, not
// by the stream's refusal.
func unanswered(err error) bool {
	return errors.Is(err, jetstream.ErrAsyncPublishTimeout) || errors.Is(err, nats.ErrDisconnected) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders)
}

func (r *campaignRun) publishRow(ctx context.Context, subject string, row campaign.Row, acks chan<- pendingAck) error {
	if r.answeredAtStart[row.N] {
		r.skipped.Add(1)
		return nil
	}
	// A row whose request waited when the publishing started, and whose
	// result came since, is published before, not answered before: the
	// earlier run published it, and this one saw it answered.
	if r.waiting[row.N] {
		// Published before, and waiting: published again with the same
		// message id, it would be stored a second time once the stream's
		// duplicate window has passed since (a campaign longer than a
		// day, a tenant paused), and answered twice.
		r.duplicates.Add(1)
		return nil
	}
	if r.rows.Has(row.N) {
		// Answered meanwhile, though this run has not published it (a run
		// of the campaign from another shell did): not published again.
		// It had no result when the publishing started: published before,
		// as its publish here would have been dropped as a duplicate.
		r.duplicates.Add(1)
		return nil
	}
	req, data, err := r.set.Request(row)
	if err != nil {
		return r.rows.Invalid(row.N, req, err.Error())
	}
	m := nats.NewMsg(subject)
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, offboard.RequestMsgID(r.f.tenant, req.RequestID, req.Attempt))
	m.Header.Set("Content-Type", "application/json")
	rowPublishing(r.js, m)
	for {
		// Looked at before each try: while the server is behind, a try
		// waits for its acknowledgements a moment at most, and a cancel
		// meanwhile stops the publishing at once, not once they come (a
		// publish times out after 30 s), with this row unpublished.
		if r.cancelledNow() {
			return r.withdraw(row)
		}
		f, err := r.js.PublishMsgAsync(m)
		switch {
		case err == nil:
			r.sent.Add(1)
			acks <- pendingAck{row: row.N, f: f}
			return nil
		case errors.Is(err, jetstream.ErrTooManyStalledMsgs) && ctx.Err() == nil:
			continue // the server is behind: wait for its acknowledgements
		}
		r.rows.Unpublished(row.N)
		r.notePubErr(err)
		return fmt.Errorf("publish row %d: %w", row.N, err)
	}
}

// withdraw records a row not published because the campaign was
// cancelled (Rows.Withdrawn); at the first, it says on standard error that
// the publishing stopped and how many rows this run sent before: the
// summary comes only once every row sent is answered.
func (r *campaignRun) withdraw(row campaign.Row) error {
	if r.stopTold.CompareAndSwap(false, true) {
		r.progress.note(r.c.stderr, fmt.Sprintf("offboardctl: campaign %s was cancelled: publishing stopped (rows sent before the cancel: %d); the rows not sent are reported failed with code %s",
			r.f.name, r.sent.Load(), offboard.CodeCancelled))
	}
	return r.rows.Withdrawn(row.N, row)
}

// rowPublishing is called with a row's message as it is about to be
// published: a test publishes there.
var rowPublishing = func(jetstream.JetStream, *nats.Msg) {}

// closedTime is a closed channel: a wait whose time is over.
var closedTime = func() <-chan time.Time {
	ch := make(chan time.Time)
	close(ch)
	return ch
}()

// ackGrace bounds how long an interrupted run (Ctrl-C, --timeout) waits
// for the acknowledgements of the publishes it sent: the summary counts
// them, and a publish whose acknowledgement does not come is told as
// unconfirmed.
const ackGrace = 5 * time.Second

// collectAcks counts the stream's answers: stored, or dropped as a
// duplicate (published before); a refused row is recorded unpublished.
// Once ctx ends, the publishes already sent are awaited up to ackGrace,
// all of them together; those still unanswered then are counted
// unconfirmed.
func (r *campaignRun) collectAcks(ctx context.Context, acks <-chan pendingAck) {
	interrupted := ctx.Done()
	var gaveUp <-chan time.Time
	var grace *time.Timer
	defer func() {
		if grace != nil {
			grace.Stop()
		}
	}()
	for p := range acks {
		for answered := false; !answered; {
			select {
			case ack := <-p.f.Ok():
				r.unansweredSince = time.Time{}
				r.countAck(p, ack)
				answered = true
			case err := <-p.f.Err():
				switch {
				case queue.InProcess(err):
					// Another publish of the row (another run's) is
					// being stored: published again until it is, within
					// publishAgainFor.
					if r.unansweredSince.IsZero() {
						r.unansweredSince = time.Now()
					}
				case !unanswered(err):
					r.unansweredSince = time.Time{} // the stream's refusal: an answer
				case r.unansweredSince.IsZero():
					r.unansweredSince = time.Now()
				}
				if f, ok := r.publishAgain(ctx, p, err); ok {
					p.f, p.again = f, true
					continue
				}
				r.noteUnpublished(p, err)
				answered = true
			case <-interrupted:
				grace = time.NewTimer(ackGrace)
				interrupted, gaveUp = nil, grace.C
			case <-gaveUp:
				// The grace is over for the publishes after this one
				// too: the timer fires once, and each of them was
				// awaited until its publish timed out, then counted
				// not published.
				gaveUp = closedTime
				// An answer that came at the same time still counts.
				select {
				case ack := <-p.f.Ok():
					r.countAck(p, ack)
				case err := <-p.f.Err():
					r.noteUnpublished(p, err)
				default:
					r.unconfirmed.Add(1)
				}
				answered = true
			}
		}
	}
}

// noteUnpublished records row p.row not published, its publish given up
// with err, and counts it apart if it may have been stored all the
// same: its publish, or an earlier one of the row (p.again), reached a
// server whose answer did not come (a timeout NATS's permission refusal
// does not explain, the connection lost), as when a stream leader is
// lost with the publishes it took.
func (r *campaignRun) noteUnpublished(p pendingAck, err error) {
	r.rows.Unpublished(p.row)
	r.notePubErr(err)
	switch {
	case p.again && unanswered(err), errors.Is(err, nats.ErrDisconnected), queue.InProcess(err):
	case errors.Is(err, jetstream.ErrAsyncPublishTimeout):
		if r.refused(p) {
			return
		}
	default:
		return
	}
	r.unknown.Add(1)
}

// refused says whether NATS refused the connection row p's publish for
// a permission (queue.PublishRefused): it times out as one whose answer
// was lost does, but was not stored.
func (r *campaignRun) refused(p pendingAck) bool {
	m := p.f.Msg()
	return m != nil && r.js != nil && queue.PublishRefused(r.js.Conn(), m.Subject)
}

// notePubErr keeps err if it is the first publish error. Not in an
// atomic.Value: one holding an error of one type panics at a swap with
// another (a lost connection's, then a timeout's or a refusal's).
func (r *campaignRun) notePubErr(err error) { r.pubErr.CompareAndSwap(nil, &err) }

// pubError is the first publish error, nil if none.
func (r *campaignRun) pubError() error {
	if p := r.pubErr.Load(); p != nil {
		return *p
	}
	return nil
}

// countAck counts a publish the stream answered: stored, or dropped as
// a duplicate. A row published again (publishAgain) dropped so was
// stored by its first publish, whose answer was lost: this run published
// it.
func (r *campaignRun) countAck(p pendingAck, ack *jetstream.PubAck) {
	r.placed(p.row, ack.Sequence)
	if ack.Duplicate && !p.again {
		r.duplicates.Add(1)
	} else {
		r.published.Add(1)
	}
}

// finish writes the report, whatever happened, and says how it ended.
func (r *campaignRun) finish(waitErr error) error {
	reportErr := r.writeReport()
	report := r.f.report
	if reportErr != nil {
		report += " not written"
	}
	c := r.rows.Counts()
	unconfirmed := ""
	if n := r.unconfirmed.Load(); n > 0 {
		unconfirmed = fmt.Sprintf(", %d sent unconfirmed (stored or not: running again publishes them once)", n)
	}
	fmt.Fprintf(r.c.stdout, "campaign %s (tenant %s): %s: created %d, already_pending %d, dry_run %d, failed %d, no result %d; "+
		"published %d, published before %d%s, answered before %d; report %s\n",
		r.f.name, r.f.tenant, rowCount(c.Rows), c.Created, c.AlreadyPending, c.DryRun, c.Failed, c.Waiting+c.Unpublished,
		r.published.Load(), r.duplicates.Load(), unconfirmed, r.skipped.Load(), report)
	switch {
	case reportErr != nil && waitErr != nil && !errors.As(waitErr, new(notTheRowsError)):
		// One line, which says what ended the wait as well: the results
		// are stored, and the same command writes the report again.
		return fmt.Errorf("campaign %s: %s without a result (%w), and %w; run the same command again to resume", r.f.name, rowCount(c.Waiting+c.Unpublished), waitErr, reportErr)
	case reportErr != nil && waitErr != nil:
		return fmt.Errorf("%w; and %w", waitErr, reportErr)
	case reportErr != nil:
		return fmt.Errorf("campaign %s: %w; run the same command again to write it", r.f.name, reportErr)
	case errors.As(waitErr, new(notTheRowsError)):
		return waitErr
	case waitErr != nil:
		return fmt.Errorf("campaign %s: %s without a result (%w); run the same command again to resume", r.f.name, rowCount(c.Waiting+c.Unpublished), waitErr)
	case c.Unpublished > 0:
		return r.unpublishedError(c.Unpublished)
	}
	return nil
}

// unpublishedError tells the n rows not published, those that may have
// been stored all the same apart (noteUnpublished): told they could not
// be published, the operator took their devices for untouched while the
// worker offboarded them.
func (r *campaignRun) unpublishedError(n int) error {
	err := r.pubError()
	switch unknown := int(min(r.unknown.Load(), int64(n))); {
	case unknown == n:
		return fmt.Errorf("campaign %s: %s not known to be published: %s publish got no answer (%w), and may have been stored; "+
			"run the same command again: it publishes those that were not", r.f.name, rowCount(n), theirs(n), err)
	case unknown > 0:
		return fmt.Errorf("campaign %s: %s could not be published (%w), and %d more not known to be: %s publish got no answer, and may have been stored; "+
			"run the same command again: it publishes those that were not", r.f.name, rowCount(n-unknown), err, unknown, theirs(unknown))
	}
	return fmt.Errorf("campaign %s: %s could not be published (%w); run the same command again", r.f.name, rowCount(n), err)
}

// rowCount is n rows, "1 row" for one.
func rowCount(n int) string {
	if n == 1 {
		return "1 row"
	}
	return fmt.Sprintf("%d rows", n)
}

// theirs is the possessive of n rows: "its" for one.
func theirs(n int) string {
	if n == 1 {
		return "its"
	}
	return "their"
}

// writeReport writes the report next to its final name, then renames it.
func (r *campaignRun) writeReport() error {
	in, err := os.Open(r.src)
	if err != nil {
		return err
	}
	defer func() { _ = in.Close() }()
	tmp, err := os.CreateTemp(filepath.Dir(r.f.report), filepath.Base(r.f.report)+".*")
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if err := r.rows.WriteReport(tmp, in); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("report: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	// The name may have become something else than a file since the start.
	if err := checkReplaceable("--report", r.f.report); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := os.Rename(tmp.Name(), r.f.report); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// backlog is the number of a tenant's requests of a priority waiting in
// the stream, and in flight (fetched, being worked on or waiting in the
// worker), from its consumer (0, and info nil, when the consumer does not
// exist).
func backlog(ctx context.Context, js jetstream.JetStream, tenant string, p offboard.Priority) (waiting, inFlight uint64, info *jetstream.ConsumerInfo, err error) {
	cons, err := js.Consumer(ctx, offboard.StreamRequests, queue.ConsumerName(tenant, p))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return 0, 0, nil, nil
	}
	if err != nil {
		return 0, 0, nil, err
	}
	info, err = cons.Info(ctx)
	if err != nil {
		return 0, 0, nil, err
	}
	return info.NumPending, uint64(max(info.NumAckPending, 0)), info, nil
}

// withdrawnAhead counts the requests waiting behind the consumers infos
// (nil ones left out) that a campaign's cancel withdraws, but for campaign
// except's (withdrawn): the worker answers them without a call, so they
// take no place in the quota or the budget ahead of a campaign's end.
func withdrawnAhead(ctx context.Context, js jetstream.JetStream, cancels *campaign.Watcher, tenant string, infos []*jetstream.ConsumerInfo, except string) int {
	n := 0
	for _, info := range infos {
		n += withdrawn(ctx, js, cancels, tenant, info, except)
	}
	return n
}
