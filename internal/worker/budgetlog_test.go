package worker

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// overrideOnly is a control store holding one budget override.
type overrideOnly string

func (overrideOnly) Paused(string, offboard.Priority) bool { return false }
func (o overrideOnly) Budget(string) (string, bool)        { return string(o), true }
func (overrideOnly) Changed() <-chan struct{}              { return nil }

// A budget override that does not read as one, written into the control
// store by hand, is ignored with a warning that does not quote it: a
// secret pasted there would reach the logs.
func TestUnreadableBudgetOverrideIsNotLogged(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.InfoLevel)
	b := &budget{
		tenant: "contoso", horizon: limiter.Window{Length: 48 * time.Hour},
		l: limiter.NewTenant(clockwork.NewFakeClock()).AddCounter(budgetAPI, 48*time.Hour), log: zap.New(core),
	}
	const secret = "Abc8Q~S3cret.value"
	b.update(overrideOnly(secret))
	if b.active() {
		t.Error("an unreadable override is in force")
	}
	if logs.FilterMessage("budget override ignored").Len() != 1 {
		t.Errorf("logs %v: want one warning", logs.All())
	}
	for _, e := range logs.All() {
		if line := fmt.Sprint(e.Message, " ", e.ContextMap()); strings.Contains(line, "S3cret") {
			t.Errorf("log line quotes the override: %s", line)
		}
	}
}

// The budget in force is logged as offboardctl stores an override and
// status shows it (500/24h, not 500/24h0m0s), also an override stored
// in another spelling.
func TestBudgetInForceLoggedOneWay(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		file     *limiter.Window
		override Control
		want     string
	}{
		{file: &limiter.Window{Count: 500, Length: 24 * time.Hour}, override: noControl{}, want: "500/24h"},
		{override: overrideOnly("+5/60m"), want: "5/1h"},
		{override: overrideOnly("10/1h30m0s"), want: "10/1h30m"},
	} {
		core, logs := observer.New(zapcore.InfoLevel)
		b := &budget{
			tenant: "contoso", file: tc.file, horizon: limiter.Window{Length: 48 * time.Hour},
			l: limiter.NewTenant(clockwork.NewFakeClock()).AddCounter(budgetAPI, 48*time.Hour), log: zap.New(core),
		}
		b.update(tc.override)
		if n := logs.FilterMessage("budget in force").FilterField(zap.String("budget", tc.want)).Len(); n != 1 {
			t.Errorf("want one line naming the budget %s: %v", tc.want, logs.All())
		}
	}
}

// An override ignored is warned of once, not again at each later change
// of the controls (any tenant's pause or budget calls update); one
// ignored for another reason, or stored anew after one in force, is
// warned of again.
func TestIgnoredBudgetOverrideWarnedOnce(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zapcore.InfoLevel)
	b := &budget{
		tenant: "contoso", horizon: limiter.Window{Length: 48 * time.Hour},
		l: limiter.NewTenant(clockwork.NewFakeClock()).AddCounter(budgetAPI, 48*time.Hour), log: zap.New(core),
	}
	warnings := func() int { return logs.FilterMessageSnippet("budget override ignored").Len() }
	for _, step := range []struct {
		override overrideOnly
		want     int
	}{
		{"10/47h0m1s", 0}, {"10/47h", 0}, // in force: no warning
		{"10/49h", 1}, {"10/49h", 1}, {"10/49h", 1}, // longer than the journal counts
		{"not a budget", 2}, {"not a budget", 2},
		{"10/49h", 3},
		{"5/1h", 3}, {"10/49h", 4},
	} {
		b.update(step.override)
		if got := warnings(); got != step.want {
			t.Fatalf("after %q: %d warnings, want %d: %v", step.override, got, step.want, logs.All())
		}
	}
	// A replica counts as far back as the budget stream kept when it
	// started: one made to keep longer since needs a restart, which the
	// warning says beside the flag.
	for _, e := range logs.FilterMessageSnippet("longer than the budget journal can count").All() {
		if !strings.Contains(e.Message, "restart the worker") {
			t.Errorf("warning %q does not say a restart takes a longer budget stream up", e.Message)
		}
	}
}
