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
