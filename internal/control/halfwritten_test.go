package control_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/control"
	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/internal/queue/natstest"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestHalfWrittenPauseSaysWhatIsInForce: a pause or resume of both
// priorities whose second write fails (here NATS refuses the key to the
// operator) says which priority changed and which did not, and both
// write bulk first: a pause cut short has stopped the campaigns. It named
// only the key that failed, and a pause cut short left normal paused and
// bulk running.
// natstest.StartFromConfig sets environment variables: not parallel.
func TestHalfWrittenPauseSaysWhatIsInForce(t *testing.T) {
	for _, tc := range []struct {
		action, denied, want string
		paused               map[offboard.Priority]bool
	}{
		{control.ActionPause, "normal", "bulk paused, normal not ",
			map[offboard.Priority]bool{offboard.Bulk: true, offboard.Normal: false}},
		{control.ActionResume, "normal", "bulk resumed, normal not ",
			map[offboard.Priority]bool{offboard.Bulk: false, offboard.Normal: true}},
	} {
		t.Run(tc.action, func(t *testing.T) {
			admin, op := deniedOneKey(t, control.PauseKey("contoso", offboard.Priority(tc.denied)))
			kv, err := admin.KeyValue(t.Context(), offboard.BucketControl)
			if err != nil {
				t.Fatal(err)
			}
			if tc.action == control.ActionResume { // both paused, as a full pause leaves them
				for _, p := range control.Priorities {
					if _, err := kv.Put(t.Context(), control.PauseKey("contoso", p), []byte(`{"paused":true,"by":"alice"}`)); err != nil {
						t.Fatal(err)
					}
				}
			}
			store, err := control.Open(t.Context(), op, offboard.Subjects{})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			_, err = store.Apply(ctx, control.Change{Tenant: "contoso", Action: tc.action, Priority: control.PriorityAll, By: "alice"})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "offboardctl status contoso") {
				t.Errorf("error %v, want it to say %q and how to see what is in force", err, tc.want)
			}
			v, err := control.Open(t.Context(), admin, offboard.Subjects{})
			if err != nil {
				t.Fatal(err)
			}
			view, err := v.Load(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			for p, want := range tc.paused {
				if got := view.Paused("contoso", p); got != want {
					t.Errorf("%s paused %v, want %v", p, got, want)
				}
			}
			// The part in force has its audit event, as a change of bulk
			// alone would.
			bulk, err := kv.Get(t.Context(), control.PauseKey("contoso", offboard.Bulk))
			if err != nil {
				t.Fatal(err)
			}
			ev := lastEvent(t, admin, "contoso")
			if ev == nil || ev.Action != tc.action || ev.Priority != string(offboard.Bulk) || ev.By != "alice" || ev.Revision != bulk.Revision() {
				t.Errorf("audit event %+v, want %s of bulk by alice at revision %d", ev, tc.action, bulk.Revision())
			}
		})
	}
}

// lastEvent is the tenant's last control event, nil when there is none.
func lastEvent(t *testing.T, js jetstream.JetStream, tenant string) *control.Event {
	t.Helper()
	st, err := js.Stream(t.Context(), offboard.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(t.Context(), offboard.Subjects{}.Control(tenant))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var ev control.Event
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		t.Fatal(err)
	}
	return &ev
}

// deniedOneKey starts a NATS server where user op may not write key of
// the control bucket, sets up contoso's streams and buckets as user
// admin, and connects as both.
func deniedOneKey(t *testing.T, key string) (admin, op jetstream.JetStream) {
	t.Helper()
	conf := filepath.Join(t.TempDir(), "nats.conf")
	body := `authorization { users = [
  {user: admin, password: pw}
  {user: op, password: pw, permissions: {publish: {allow: [">"], deny: ["$KV.` + offboard.BucketControl + `.` + key + `"]}}}
] }
`
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	url := natstest.StartFromConfig(t, conf, "")
	connect := func(user string) jetstream.JetStream {
		_, js := natstest.ConnectTo(t, strings.Replace(url, "nats://", "nats://"+user+":pw@", 1),
			nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
		return js
	}
	admin = connect("admin")
	if _, err := queue.Ensure(t.Context(), admin, queue.Settings{Tenants: []string{"contoso"}}); err != nil {
		t.Fatal(err)
	}
	return admin, connect("op")
}
