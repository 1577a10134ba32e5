package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/control"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestControlWriteStoredButUnansweredIsNotReportedFailed: a budget, a
// pause and a campaign cancel whose write the server stores but whose answer is
// lost (a node lost between its write and its reply, a partition that
// opens one way only) is in force: the command fails, exit 1, one line,
// but says that the change may be in force and where to look, as a
// pause does. Before, it said only that the write ran out of time, and
// "run it again": the operator took the old budget, or the campaign, to
// be still in force.
func TestControlWriteStoredButUnansweredIsNotReportedFailed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, subject string
		args          []string
		inForce       func(t *testing.T, kvGet func(string) []byte) bool
		want          string
	}{
		{"budget", "$KV." + offboard.BucketControl + "." + control.BudgetKey(tenant), []string{"budget", tenant, "5/1h"},
			func(t *testing.T, get func(string) []byte) bool {
				var e control.Entry
				return json.Unmarshal(get(control.BudgetKey(tenant)), &e) == nil && e.Value == "5/1h"
			}, "budget of contoso not known to be set to 5/1h"},
		{"pause", "$KV." + offboard.BucketControl + "." + control.PauseKey(tenant, offboard.Bulk), []string{"pause", tenant, "--priority", "bulk"},
			func(t *testing.T, get func(string) []byte) bool {
				var e control.Entry
				return json.Unmarshal(get(control.PauseKey(tenant, offboard.Bulk)), &e) == nil && e.Paused
			}, "bulk not known to be paused"},
		{"campaign cancel", "$KV." + offboard.BucketControl + "." + campaign.Key(tenant, "wave"), []string{"campaign", "cancel", "--tenant", tenant, "--name", "wave"},
			func(t *testing.T, get func(string) []byte) bool {
				var m campaign.Mark
				return json.Unmarshal(get(campaign.Key(tenant, "wave")), &m) == nil && m.Cancelled
			}, "campaign wave of tenant contoso not known to be cancelled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := natstest.Start(t, 1)
			_, js := c.Connect(t)
			if _, err := queue.Ensure(t.Context(), js, queue.Settings{Tenants: []string{tenant}}); err != nil {
				t.Fatal(err)
			}
			// A request of the campaign, waiting: the campaign exists.
			m := nats.NewMsg(offboard.Subjects{}.Request(tenant, offboard.Bulk))
			m.Data = []byte(`{"requestId":"` + campaign.RequestID("wave", 1) + `","machineId":"` + strings.Repeat("a", 40) + `","source":"campaign:wave"}`)
			m.Header.Set(jetstream.MsgIDHeader, offboard.RequestMsgID(tenant, campaign.RequestID("wave", 1), 1))
			if _, err := js.PublishMsg(t.Context(), m); err != nil {
				t.Fatal(err)
			}
			kv, err := js.KeyValue(t.Context(), offboard.BucketControl)
			if err != nil {
				t.Fatal(err)
			}
			get := func(key string) []byte {
				e, err := kv.Get(context.Background(), key)
				if err != nil {
					return nil
				}
				return e.Value()
			}
			s := natstest.NewSilencer(t, strings.TrimPrefix(c.URLs(), "nats://"))
			// Its publish (PUB or HPUB), not a read of the key (a direct
			// get names it after its own subject).
			s.DeafAfter("PUB " + tc.subject + " ")
			var out, errb strings.Builder
			code := runContext(t.Context(), append([]string{"--nats-url", s.URL(), "--connect-timeout", "1s"}, tc.args...), &out, &errb)
			t.Logf("exit %d: %s%s", code, out.String(), errb.String())
			if !s.Deaf() || !tc.inForce(t, get) {
				t.Fatalf("the write was not stored with its answer lost (sent %v)", s.Deaf())
			}
			if code != exitFailed || strings.Count(strings.TrimSpace(errb.String()), "\n") != 0 || !strings.Contains(errb.String(), tc.want) {
				t.Errorf("exit %d, want 1 and one line saying %q: %q", code, tc.want, errb.String())
			}
		})
	}
}

// TestDeadRetryStoredButUnansweredIsNotCountedNotRetried: a dead
// letter's retry that the request stream stores but whose answer is
// lost is worked on: dead retry says it may have been published, counts
// it apart from those not retried, and stops there, exit 1, one line;
// run again, it finds the retry waiting and publishes only the rest.
// Before, it was told "publish the retry of y-1: context deadline
// exceeded" and counted not retried.
func TestDeadRetryStoredButUnansweredIsNotCountedNotRetried(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	a := strings.Repeat("a", 40)
	publishDead(t, js, offboard.CodeAPIError, `{"requestId":"y-1","machineId":"`+a+`"}`, `{"requestId":"y-2","machineId":"`+a+`"}`)
	s := natstest.NewSilencer(t, strings.TrimPrefix(url, "nats://"))
	s.DeafAfter("PUB " + offboard.Subjects{}.Request(tenant, offboard.Normal) + " ")
	code, out, errs := ctl(t, s.URL(), "--connect-timeout", "1s", "dead", "retry", tenant, "--all")
	t.Logf("exit %d: %s%s", code, out, errs)
	st, err := js.Stream(t.Context(), offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := st.Info(t.Context()); err != nil || info.State.Msgs != 1 {
		t.Fatalf("the retry was not stored with its answer lost: %v", err)
	}
	// The wait is the retry's own 10 s: --connect-timeout does not set it.
	if code != exitFailed || strings.Count(strings.TrimSpace(errs), "\n") != 0 || !strings.Contains(out, "y-1 attempt 2 got no answer in 10s, and may have been published") ||
		strings.Contains(errs, "connect-timeout") ||
		!strings.Contains(out, "0 retried, 0 retried before (the stream dropped the repeat), 1 not retried, 0 answered since, 1 not known to be retried (no answer)") {
		t.Errorf("exit %d, want 1, one line, and y-1 told as not known to be retried: stdout %q, stderr %q", code, out, errs)
	}
	code, out, errs = ctl(t, url, "dead", "retry", tenant, "--all")
	if code != exitOK || !strings.Contains(out, "1 retried, 1 retried before (the stream dropped the repeat), 0 not retried") {
		t.Errorf("again: exit %d: %s%s", code, out, errs)
	}
}

// TestControlWriteRefusedIsNotToldMayBeStored: a budget, a pause and a
// campaign cancel whose write NATS refuses the user (no permission to
// publish on the control bucket's key) also times out, but was not
// stored: the command says it is not in force and that NATS refused the
// user, in one line. It said that the change might have been stored, that
// the same command again would finish it, and blamed a leader election
// or --connect-timeout, beside "NATS refused this user".
func TestControlWriteRefusedIsNotToldMayBeStored(t *testing.T) {
	t.Parallel()
	url, js := natsWithReader(t, "$KV.>")
	m := nats.NewMsg(offboard.Subjects{}.Request(tenant, offboard.Bulk))
	m.Data = []byte(`{"requestId":"` + campaign.RequestID("wave", 1) + `","machineId":"` + strings.Repeat("a", 40) + `","source":"campaign:wave"}`)
	m.Header.Set(jetstream.MsgIDHeader, offboard.RequestMsgID(tenant, campaign.RequestID("wave", 1), 1))
	if _, err := js.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"budget", tenant, "5/1h"}, "budget of contoso not set to 5/1h: its write was refused"},
		{[]string{"pause", tenant, "--priority", "bulk"}, "bulk not paused"},
		{[]string{"campaign", "cancel", "--tenant", tenant, "--name", "wave"}, "campaign wave of tenant contoso not cancelled: its mark was refused"},
	} {
		code, _, errs := ctl(t, url, append([]string{"--connect-timeout", "1s"}, tc.args...)...)
		if code != exitFailed || strings.Count(strings.TrimSpace(errs), "\n") != 0 || !strings.Contains(errs, tc.want) ||
			!strings.Contains(errs, "Permissions Violation") || strings.Contains(errs, "pw@") {
			t.Errorf("%v: exit %d, want 1 and one line saying %q and the refusal: %q", tc.args, code, tc.want, errs)
		}
		for _, wrong := range []string{"may have been stored", "not known", "finishes it", "leader election", "connect-timeout"} {
			if strings.Contains(errs, wrong) {
				t.Errorf("%v: %q says %q of a write NATS refused", tc.args, errs, wrong)
			}
		}
	}
}

// A retry left unanswered that is the last dead letter, after one not
// retried (its body fails the request's checks), is counted apart in
// the command's error as in its last line of output ("1 not retried, 1
// not known to be retried"): the error said "2 dead letters not
// retried".
func TestDeadRetryLastUnansweredIsNotCountedNotRetried(t *testing.T) {
	t.Parallel()
	refused := fmt.Errorf("dead letter 1: its body fails the request's checks")
	unknown := fmt.Errorf("dead letter 2: %w", unansweredRetry{errors.New("the retry of y-1 attempt 2 got no answer in 10s, and may have been published")})
	err := stoppedAt([]error{refused, unknown}, 0)
	if want := "1 dead letters not retried, 1 not known to be retried (no answer; each said why above)"; err == nil || err.Error() != want {
		t.Errorf("error %v, want %q", err, want)
	}
	if !errors.Is(err, refused) || !errors.As(err, new(unansweredRetry)) {
		t.Errorf("error %v does not hold both", err)
	}
}
