package app

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/contoso-secops/mde-offboard/internal/campaign"
	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// rawResults keeps every message published on the result subjects, as
// sent, by request sequence.
type rawResults struct {
	mu    sync.Mutex
	bySeq map[uint64][][]byte
}

func (e *env) collectRaw() *rawResults {
	e.t.Helper()
	s := &rawResults{bySeq: map[uint64][][]byte{}}
	cons, err := e.js.OrderedConsumer(e.t.Context(), offboard.StreamResults, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"mde.offboard.result.>"}})
	if err != nil {
		e.t.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var r struct {
			RequestSeq uint64 `json:"requestSeq"`
		}
		_ = json.Unmarshal(m.Data(), &r)
		s.mu.Lock()
		s.bySeq[r.RequestSeq] = append(s.bySeq[r.RequestSeq], bytes.Clone(m.Data()))
		s.mu.Unlock()
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(cc.Stop)
	return s
}

func (s *rawResults) get(seq uint64) [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bySeq[seq]
}

// schemaCase is a request whose result must have outcome and code.
type schemaCase struct {
	name, subject string
	body          any
	msgID         string
	outcome, code string
	before        func() // sets up the simulator before it is published
}

// TestWorkerResultsMatchTheResultSchema: the results a worker really
// publishes, of every outcome and every failure code, over bad requests
// of every kind too, are valid against deploy/schema/result.schema.json,
// which dashboards and consumers read them with.
func TestWorkerResultsMatchTheResultSchema(t *testing.T) {
	t.Parallel()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	sch, err := c.Compile("../../deploy/schema/result.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	e := setup(t, envConfig{machines: 12, tenants: []string{"contoso", "fabrikam"}, tweak: func(f *config.File) {
		for _, tn := range f.Tenants {
			if tn.Name == "fabrikam" {
				tn.Guards = parseGuards(t, "\n    guards:\n      protect:\n        machineTags: [\"DoNotOffboard\"]\n      requireInactiveFor: 1m\n")
			}
		}
	}})
	raw := e.collectRaw()
	cases := schemaCases(t, e)
	seqs := make([]uint64, len(cases))
	for i, tc := range cases {
		if tc.before != nil {
			tc.before()
		}
		seqs[i] = e.publishCase(tc)
		eventually(t, 30*time.Second, tc.name+" answered", func() bool { return len(raw.get(seqs[i])) > 0 })
	}
	for i, tc := range cases {
		rs := raw.get(seqs[i])
		if len(rs) != 1 {
			t.Errorf("%s: %d results, want 1", tc.name, len(rs))
			continue
		}
		var r offboard.Result
		if err := json.Unmarshal(rs[0], &r); err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		code := ""
		if r.Error != nil {
			code = r.Error.Code
		}
		if r.Outcome != tc.outcome || code != tc.code {
			t.Errorf("%s: %s %s, want %s %s: %s", tc.name, r.Outcome, code, tc.outcome, tc.code, rs[0])
		}
		inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(rs[0]))
		if err == nil {
			err = sch.Validate(inst)
		}
		if err != nil {
			t.Errorf("%s: the result is not valid against result.schema.json: %v\n%s", tc.name, err, rs[0])
		}
	}
}

func (e *env) publishCase(tc schemaCase) uint64 {
	e.t.Helper()
	subject := cmpOr(tc.subject, "mde.offboard.request.contoso")
	if tc.msgID == "" {
		return e.publish(subject, tc.body, "").Sequence
	}
	return e.publish(subject, tc.body, tc.msgID).Sequence
}

func schemaCases(t *testing.T, e *env) []schemaCase {
	t.Helper()
	co, fa := e.tenants["contoso"], e.tenants["fabrikam"]
	m := co.machines
	old := time.Now().Add(-90 * 24 * time.Hour)
	linux := mdesim.Machine{ID: newID(), ComputerDNSName: "tux.contoso.local", OSPlatform: "Linux", LastSeen: old}
	twin1 := mdesim.Machine{ID: newID(), ComputerDNSName: "twin.contoso.local", LastSeen: old}
	twin2 := mdesim.Machine{ID: newID(), ComputerDNSName: "TWIN.contoso.local", LastSeen: old, HealthStatus: "Inactive"}
	tagged := mdesim.Machine{ID: newID(), ComputerDNSName: "tagged.fabrikam.local", LastSeen: old, MachineTags: []string{"DoNotOffboard"}}
	inactive := mdesim.Machine{ID: newID(), ComputerDNSName: "inactive.fabrikam.local", LastSeen: old}
	back := mdesim.Machine{ID: newID(), ComputerDNSName: "back.contoso.local", LastSeen: time.Now().Add(-time.Hour)}
	gone := mdesim.Machine{ID: newID(), ComputerDNSName: "gone.contoso.local", LastSeen: old}
	for _, x := range []mdesim.Machine{linux, twin1, twin2, back, gone} {
		e.sim.AddMachine(co.tenantID, x)
	}
	for _, x := range []mdesim.Machine{tagged, inactive} {
		e.sim.AddMachine(fa.tenantID, x)
	}
	inject := func(status int, code string, n int) func() {
		return func() { e.sim.InjectStatus(co.tenantID, "offboard", status, code, "injected", n, 0) }
	}
	req := func(id string, kv ...any) map[string]any {
		b := map[string]any{"requestId": id}
		for i := 0; i+1 < len(kv); i += 2 {
			b[kv[i].(string)] = kv[i+1]
		}
		return b
	}
	deep := `{"requestId":"deep","machineId":"` + m[0].ID + `","x":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`
	exact := `{"requestId":"exact","machineId":"` + m[11].ID + `","pad":""}`
	exact = exact[:len(exact)-2] + strings.Repeat("p", offboard.MaxRequestSize-len(exact)) + `"}`
	over := exact[:len(exact)-2] + `p"}`
	const failed, invalid = offboard.OutcomeFailed, offboard.CodeInvalidRequest
	return []schemaCase{
		{name: "created", body: req("created", "machineId", m[0].ID, "requestedBy", "cmdb", "source", "s:1"), outcome: offboard.OutcomeCreated},
		{name: "already pending", body: req("pending", "machineId", m[0].ID), outcome: offboard.OutcomeAlreadyPending},
		{name: "dry run by name", body: req("dry", "computerDnsName", m[1].ComputerDNSName, "dryRun", true), outcome: offboard.OutcomeDryRun},
		{name: "created by name", body: req("by-name", "computerDnsName", m[2].ComputerDNSName+"."), outcome: offboard.OutcomeCreated},
		{name: "created with guards", subject: "mde.offboard.request.fabrikam.bulk", body: req("guarded", "machineId", inactive.ID), outcome: offboard.OutcomeCreated},
		{name: "blocked", subject: "mde.offboard.request.fabrikam", body: req("blocked", "machineId", tagged.ID), outcome: failed, code: offboard.CodeBlockedByPolicy},
		{name: "seen after notSeenSince", body: req("back", "machineId", back.ID, "notSeenSince", old.Format(time.RFC3339)), outcome: failed, code: offboard.CodeBlockedByPolicy},
		{name: "not seen since", body: req("gone", "machineId", gone.ID, "notSeenSince", old.Add(time.Second).Format(time.RFC3339)), outcome: offboard.OutcomeCreated},
		{name: "notSeenSince in the future", body: req("future", "machineId", gone.ID, "notSeenSince", time.Now().Add(time.Hour).Format(time.RFC3339)), outcome: failed, code: invalid},
		{name: "invalid", body: req("a b", "machineId", "zz", "comment", "\u202e"), outcome: failed, code: invalid},
		{name: "no object", body: "[]", outcome: failed, code: invalid},
		{name: "lone surrogate", body: `{"requestId":"sur","machineId":"` + m[3].ID + `","comment":"\ud800"}`, outcome: failed, code: invalid},
		{name: "nested too deep", body: deep, outcome: failed, code: invalid},
		{name: "exactly 64 KiB", body: exact, msgID: "contoso:exact", outcome: offboard.OutcomeCreated},
		{name: "one byte over 64 KiB", body: over, msgID: "contoso:over", outcome: failed, code: invalid},
		{name: "subject of no form", subject: "mde.offboard.request.contoso.urgent", body: req("odd", "machineId", m[3].ID), outcome: failed, code: invalid},
		{name: "unknown tenant", subject: "mde.offboard.request.northwind", body: req("nw", "machineId", m[3].ID), outcome: failed, code: offboard.CodeUnknownTenant},
		{name: "tenant of no form", subject: "mde.offboard.request.North_Wind!", body: req("nw2", "machineId", m[3].ID), outcome: failed, code: offboard.CodeUnknownTenant},
		{name: "not found by name", body: req("nf", "computerDnsName", "nowhere.contoso.local"), outcome: failed, code: offboard.CodeMachineNotFound},
		{name: "ambiguous", body: req("amb", "computerDnsName", "twin.contoso.local"), outcome: failed, code: offboard.CodeAmbiguousMachine},
		{name: "unsupported os", body: req("linux", "machineId", linux.ID), outcome: failed, code: offboard.CodeUnsupportedOS},
		{name: "unsupported client", before: inject(http.StatusBadRequest, "ClientVersionNotSupported", 1), body: req("client", "machineId", m[4].ID), outcome: failed, code: offboard.CodeUnsupportedClient},
		{name: "forbidden", before: inject(http.StatusForbidden, "Forbidden", 1), body: req("forbidden", "machineId", m[5].ID), outcome: failed, code: offboard.CodeForbidden},
		{name: "unauthorized", before: inject(http.StatusUnauthorized, "Unauthorized", 3), body: req("unauth", "machineId", m[6].ID), outcome: failed, code: offboard.CodeUnauthorized},
		{name: "rejected", before: inject(http.StatusBadRequest, "InvalidRequestBody", 1), body: req("rejected", "machineId", m[7].ID), outcome: failed, code: offboard.CodeAPIRejected},
		{name: "api error", before: inject(http.StatusServiceUnavailable, "ServiceUnavailable", 6), body: req("apierr", "machineId", m[8].ID), outcome: failed, code: offboard.CodeAPIError},
		{name: "cancelled", before: func() { cancelCampaign(t, e, "inc") }, subject: "mde.offboard.request.contoso.bulk",
			body: req("inc-000001", "machineId", m[9].ID, "source", campaign.Source("inc")), outcome: failed, code: offboard.CodeCancelled},
		{name: "unreadable ledger entry", before: func() { putLedger(t, e, "contoso", "unreadable", `{"state":"done","res`) },
			body: req("unreadable", "machineId", m[10].ID), outcome: failed, code: offboard.CodeInternal},
	}
}

func cancelCampaign(t *testing.T, e *env, name string) {
	t.Helper()
	kv, err := campaign.ControlBucket(t.Context(), e.js)
	if err != nil {
		t.Fatal(err)
	}
	if err := campaign.SetMark(t.Context(), kv, "contoso", name, campaign.Mark{Cancelled: true, By: "op", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
}

func putLedger(t *testing.T, e *env, tenant, id, value string) {
	t.Helper()
	kv, err := e.js.KeyValue(t.Context(), offboard.BucketLedger)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), fmt.Sprintf("r.%s.%s", tenant, base64.RawURLEncoding.EncodeToString([]byte(id))), []byte(value)); err != nil {
		t.Fatal(err)
	}
}
