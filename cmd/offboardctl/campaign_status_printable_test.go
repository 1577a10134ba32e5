package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestCampaignStatusShowsWhatOthersWrotePrintable: campaign status shows
// a cancel mark written by hand, and a result's error code, printable in
// both of its forms, as status and dead ls do. --json showed a C1 control
// (U+009B, which some terminals take for an escape) or a bidirectional
// override as they are, and the table a code's terminal escape.
func TestCampaignStatusShowsWhatOthersWrotePrintable(t *testing.T) {
	t.Parallel()
	url, js := natsWithStreams(t)
	kv, err := js.KeyValue(t.Context(), offboard.BucketControl)
	if err != nil {
		t.Fatal(err)
	}
	const by, reason = "eve\u009b2J", "\u202eCAB-7"
	mark := `{"cancelled":true,"by":"` + by + `","reason":"` + reason + `","at":"2026-01-02T03:04:05Z"}`
	if _, err := kv.Put(t.Context(), campaign.Key("contoso", "wave"), []byte(mark)); err != nil {
		t.Fatal(err)
	}
	const code = "x\x1b[2J\u009b"
	res, err := (&offboard.Result{RequestID: "wave-000001", Tenant: "contoso", Outcome: offboard.OutcomeFailed,
		Error: offboard.Failed(code, "m"), Attempt: 1}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), offboard.Subjects{}.Result("contoso"), res, jetstream.WithMsgID("r1")); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"campaign", "status", "--tenant", "contoso", "--name", "wave"},
		{"campaign", "status", "--tenant", "contoso", "--name", "wave", "--json"},
	} {
		exit, out, errs := ctl(t, url, args...)
		if exit != exitOK {
			t.Fatalf("%q: exit %d, stderr %q", args, exit, errs)
		}
		if strings.ContainsAny(out, "\x1b\u009b\u202e") {
			t.Errorf("%q shows a control character as it is:\n%q", args, out)
		}
		if args[len(args)-1] != "--json" {
			continue
		}
		var st campaignState
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("--json: %v:\n%s", err, out)
		}
		if st.Cancelled == nil || st.Cancelled.By != by || st.Cancelled.Reason != reason || st.FailedByCode[code] != 1 {
			t.Errorf("--json reads back as %+v, %v; want the values written", st.Cancelled, st.FailedByCode)
		}
	}
}
