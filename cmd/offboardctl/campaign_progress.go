package main

import (
	"fmt"
	"io"
	"os"
	"time"

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
	paused                bool // the campaign's priority is paused
	byBudget              bool // the tenant's budget, not the quota, sets the ETA
}

func (s progressSnapshot) line() string {
	c := s.counts
	return fmt.Sprintf("campaign %s (%s): %d/%d answered: created %d, already_pending %d, dry_run %d, failed %d; waiting %d; published %d (before %d); ETA %s",
		s.name, s.tenant, c.Answered(), c.Rows, c.Created, c.AlreadyPending, c.DryRun, c.Failed, c.Waiting,
		s.published, s.duplicates, s.etaText())
}

// etaText is the ETA as shown: "paused" while an operator's pause holds
// the campaign's requests.
func (s progressSnapshot) etaText() string {
	if s.paused && s.counts.Waiting > 0 {
		return "paused"
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
		), w: w}
	}
	return &lineProgress{w: w, every: every}
}

type barProgress struct {
	bar *progressbar.ProgressBar
	w   io.Writer
}

func (p *barProgress) show(s progressSnapshot) {
	c := s.counts
	p.bar.Describe(fmt.Sprintf("created %d · pending %d · dry %d · failed %d · waiting %d · ETA %s",
		c.Created, c.AlreadyPending, c.DryRun, c.Failed, c.Waiting, s.etaText()))
	_ = p.bar.Set(c.Answered())
}

func (p *barProgress) finish() { _, _ = fmt.Fprintln(p.w) }

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

func (p *lineProgress) finish() {}
