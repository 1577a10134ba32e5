package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
)

// progressSnapshot is what the progress shows.
type progressSnapshot struct {
	name, tenant          string
	counts                campaign.Counts
	published, duplicates int64
	eta                   time.Duration
	etaUnknown            bool // no rate of answers measured yet, and the quota is not the limit
	paused                bool // the campaign's priority is paused, and the campaign not cancelled
	byBudget              bool // the tenant's budget, not the quota, sets the ETA
	noWorker              bool // no worker has announced the tenant lately
	// lost is set while the connection to NATS is lost and the client
	// reconnects, for lostFor, to server (without its password).
	lost    bool
	lostFor time.Duration
	server  string
}

func (s progressSnapshot) line() string {
	c := s.counts
	return fmt.Sprintf("campaign %s (%s): %d/%d answered: created %d, already_pending %d, dry_run %d, failed %d; waiting %d%s; published %d (before %d); ETA %s%s",
		s.name, s.tenant, c.Answered(), c.Rows, c.Created, c.AlreadyPending, c.DryRun, c.Failed, c.Waiting,
		unpublishedNote(c, "; "), s.published, s.duplicates, s.etaText(), s.noWorkerNote("; ")) + s.lostNote("; ")
}

// lostNote says, after sep, that the connection to NATS is lost and
// being made again: no result can come meanwhile, and the counts are
// those of before. The lines went on unchanged, ETA included, as if the
// rows were only slow, for the two minutes the client tries before the
// run ends. Empty while connected.
func (s progressSnapshot) lostNote(sep string) string {
	if !s.lost {
		return ""
	}
	return fmt.Sprintf("%sthe connection to NATS at %s was lost %s ago: reconnecting, the counts are as of then", sep, s.server, campaign.Human(s.lostFor))
}

// noWorkerNote says, after sep, that no worker has announced the tenant
// while rows wait: nothing works them, and the ETA, as status's, is what
// they take once one runs. It showed that time alone, the same at every
// line, as if a worker were at them. Empty otherwise.
func (s progressSnapshot) noWorkerNote(sep string) string {
	if !s.noWorker || s.counts.Waiting == 0 || s.lost {
		return ""
	}
	return sep + "no worker has announced the tenant: the ETA counts once one runs"
}

// unpublishedNote counts, after sep, the rows whose publish failed (an
// acknowledgement that timed out while NATS was away): no result comes
// for them in this run, and the run's end says to run it again. Empty
// when there are none.
func unpublishedNote(c campaign.Counts, sep string) string {
	if c.Unpublished == 0 {
		return ""
	}
	return fmt.Sprintf("%snot published %d", sep, c.Unpublished)
}

// etaText is the ETA as shown: "paused" while an operator's pause holds
// the campaign's requests, "unknown" until it can be told.
func (s progressSnapshot) etaText() string {
	if s.paused && s.counts.Waiting > 0 {
		return "paused"
	}
	if s.etaUnknown {
		return "unknown"
	}
	if s.byBudget && s.eta > 0 {
		return campaign.Human(s.eta) + " (budget)"
	}
	return campaign.Human(s.eta)
}

// progress shows a campaign's progress: a bar on a terminal, a line every
// few seconds otherwise.
type progress interface {
	show(progressSnapshot)
	// note writes line to w, standard error, which may be the terminal
	// the bar is drawn on: the bar is cleared first, so that the line
	// stands on its own rather than after the bar; the bar comes back
	// below it at its next refresh.
	note(w io.Writer, line string)
	finish()
}

func newProgress(w io.Writer, every time.Duration, total int) progress {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return &barProgress{bar: progressbar.NewOptions(total,
			progressbar.OptionSetWriter(w),
			progressbar.OptionShowCount(),
			progressbar.OptionSetWidth(30),
			progressbar.OptionSetPredictTime(false), // the ETA comes from the quota
			progressbar.OptionShowDescriptionAtLineEnd(),
			progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionFullWidth(),
		), w: w, fd: int(f.Fd()), count: len(fmt.Sprintf("(%d/%d)", total, total))}
	}
	return &lineProgress{w: w, every: every}
}

type barProgress struct {
	mu    sync.Mutex // show is called by the wait, note by the publishing
	bar   *progressbar.ProgressBar
	w     io.Writer
	fd    int // the terminal
	count int // columns of the bar's count, (answered/rows), at most
}

// barMinWidth is the fewest columns the bar itself keeps on a narrow
// terminal.
const barMinWidth = 10

func (p *barProgress) show(s progressSnapshot) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := s.counts
	_ = p.bar.Set(c.Answered())
	p.bar.Describe(fitDescription(s, p.room()))
}

// room is how many columns the bar and its description may take: the
// line (percent, bar, count, description) must fit the terminal, or it
// wraps and each redraw leaves a line behind. -1: the width is not known.
func (p *barProgress) room() int {
	w, _, err := term.GetSize(p.fd)
	if err != nil || w <= 0 {
		return -1
	}
	// "100% |" + bar + "| " + count + " " + description + " ", one column
	// left free. A terminal too narrow for the rest leaves none, not -1.
	return max(w-12-p.count, 0)
}

// fitDescription is the bar's description, where room columns (-1: any)
// are left for the bar and it: every count by outcome when it fits with
// a bar of barMinWidth, else the outcomes that have rows, the rows
// waiting and the ETA, with that bar or none, cut short if need be.
func fitDescription(s progressSnapshot, room int) string {
	c := s.counts
	d := fmt.Sprintf("created %d · pending %d · dry %d · failed %d · waiting %d%s · ETA %s%s",
		c.Created, c.AlreadyPending, c.DryRun, c.Failed, c.Waiting, unpublishedNote(c, " · "), s.etaText(), s.noWorkerNote(" · "))
	if s.lost {
		d += " · NATS lost " + campaign.Human(s.lostFor) + " ago, reconnecting"
	}
	if room < 0 || utf8.RuneCountInString(d) <= room-barMinWidth {
		return d
	}
	var parts []string
	for _, o := range []struct {
		label string
		n     int
	}{{"created", c.Created}, {"pending", c.AlreadyPending}, {"dry", c.DryRun}, {"failed", c.Failed}} {
		if o.n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", o.label, o.n))
		}
	}
	parts = append(parts, fmt.Sprintf("waiting %d", c.Waiting))
	if c.Unpublished > 0 {
		parts = append(parts, unpublishedNote(c, ""))
	}
	parts = append(parts, "ETA "+s.etaText())
	if s.noWorker && c.Waiting > 0 && !s.lost {
		parts = append(parts, "no worker")
	}
	if s.lost {
		parts = append(parts, "NATS lost")
	}
	d = strings.Join(parts, ", ")
	if rs := []rune(d); len(rs) > room { // with no bar left
		d = ""
		if room > 0 {
			d = string(rs[:room-1]) + "…"
		}
	}
	return d
}

func (p *barProgress) note(w io.Writer, line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.bar.Clear()
	_, _ = fmt.Fprintln(w, line)
}

func (p *barProgress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, _ = fmt.Fprintln(p.w)
}

type lineProgress struct {
	w     io.Writer
	every time.Duration
	last  time.Time
	shown string
}

func (p *lineProgress) show(s progressSnapshot) {
	// Real time: paces lines for people.
	if time.Since(p.last) < p.every {
		return
	}
	p.last = time.Now()
	p.shown = s.line()
	fmt.Fprintln(p.w, p.shown)
}

func (p *lineProgress) note(w io.Writer, line string) { _, _ = fmt.Fprintln(w, line) }

func (p *lineProgress) finish() {}
