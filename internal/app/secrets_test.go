package app

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestLoginAnswersStayOut: the login host answers one tenant 200 with a
// token response the identity library cannot decode, the other 401 with a
// 100 KiB body. Neither the token nor the body reaches a result, a dead
// letter (body or headers), a ledger entry, a metric or a log line; the
// refusal's result carries the AADSTS code and the correlation id.
func TestLoginAnswersStayOut(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.DebugLevel)
	e := setup(t, envConfig{machines: 1, logger: zap.New(core)})
	garbled, refused := e.tenants["contoso"], e.tenants["fabrikam"]
	e.sim.InjectLoginFault(garbled.tenantID, mdesim.LoginGarbled, 1000)
	e.sim.InjectLoginFault(refused.tenantID, mdesim.LoginRefusedLongBody, 1000)
	c := e.collect("mde.offboard.result.>")
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "g-1", "machineId": garbled.machines[0].ID}, "g-1")
	e.publish("mde.offboard.request.fabrikam", map[string]any{"requestId": "r-1", "machineId": refused.machines[0].ID}, "r-1")
	got := c.wait(t, 2, 30*time.Second)

	g, r := got["contoso/g-1"], got["fabrikam/r-1"]
	if len(g) != 1 || g[0].Outcome != offboard.OutcomeFailed || g[0].Error == nil {
		t.Fatalf("garbled token answer: results %+v, want one failed", g)
	}
	if len(r) != 1 || r[0].Error == nil || r[0].Error.Code != offboard.CodeUnauthorized {
		t.Fatalf("refusal: results %+v, want one unauthorized", r)
	}
	for _, want := range []string{fmt.Sprintf("AADSTS%d", mdesim.FaultAADSTS), mdesim.FaultCorrelationID} {
		if !strings.Contains(r[0].Error.Message, want) {
			t.Errorf("refusal's message %q does not hold %q", r[0].Error.Message, want)
		}
	}
	for _, res := range []offboard.Result{g[0], r[0]} {
		if n := len(res.Error.Message); n > 1000 {
			t.Errorf("%s: message of %d characters, want at most 1000", res.Tenant, n)
		}
		if n := len(res.Error.Message); n == 0 {
			t.Errorf("%s: empty message", res.Tenant)
		}
	}
	if n := len(e.sim.Calls()); n != 0 {
		t.Errorf("%d API calls without a token", n)
	}

	var everything strings.Builder
	for _, rs := range got {
		for _, res := range rs {
			b, _ := json.Marshal(res)
			everything.Write(b)
			everything.WriteString("\n")
		}
	}
	eventually(t, 10*time.Second, "two dead letters", func() bool { return e.streamMsgs(offboard.StreamDead) == 2 })
	e.writeDeadLetters(t, &everything, 2)
	e.writeLedger(t, &everything)
	e.writeEndpoint(t, &everything, "/metrics")
	for _, entry := range logs.All() {
		everything.WriteString(entry.Message)
		for k, v := range entry.ContextMap() {
			fmt.Fprintf(&everything, " %s=%v", k, v)
		}
		everything.WriteString("\n")
	}
	text := everything.String()
	if !strings.Contains(text, offboard.HeaderErrorMessage) || !strings.Contains(text, "g-1") {
		t.Fatalf("the collected text lacks the dead letters or the ledger:\n%.2000s", text)
	}
	forbidden := []string{
		mdesim.FaultAccessToken,
		mdesim.FaultAccessToken[:24],
		mdesim.FaultAccessToken[len(mdesim.FaultAccessToken)-24:],
		"SECRET", "access_token", "token_type", "3599.0",
		mdesim.FaultSecret, "Lorem ipsum", "error_description", "Trace ID",
	}
	for i, s := range forbidden {
		if strings.Contains(text, s) {
			t.Errorf("forbidden string #%d (%.12q...) appears in results, dead letters, the ledger, metrics or logs", i+1, s)
		}
	}
	for name, tt := range e.tenants {
		if strings.Contains(text, tt.secret) {
			t.Errorf("%s's client secret appears in results, dead letters, the ledger, metrics or logs", name)
		}
	}
}

// writeDeadLetters writes the body and headers of the first n dead letters.
func (e *env) writeDeadLetters(t *testing.T, w io.Writer, n int) {
	t.Helper()
	cons, err := e.js.OrderedConsumer(t.Context(), offboard.StreamDead, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("dead letter: %v", err)
		}
		for k, vs := range msg.Headers() {
			fmt.Fprintf(w, "%s: %s\n", k, strings.Join(vs, ", "))
		}
		fmt.Fprintf(w, "%s\n", msg.Data())
	}
}

// writeLedger writes every key and value of the ledger bucket.
func (e *env) writeLedger(t *testing.T, w io.Writer) {
	t.Helper()
	kv, err := e.js.KeyValue(t.Context(), offboard.BucketLedger)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.ListKeys(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for k := range keys.Keys() {
		v, err := kv.Get(t.Context(), k)
		if err != nil {
			t.Fatalf("ledger %s: %v", k, err)
		}
		fmt.Fprintf(w, "%s=%s\n", k, v.Value())
	}
}

// writeEndpoint writes what the worker's HTTP endpoint path answers.
func (e *env) writeEndpoint(t *testing.T, w io.Writer, path string) {
	t.Helper()
	resp, err := http.Get("http://" + e.app.HTTPAddr() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		t.Fatal(err)
	}
}
