package app

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf16"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// junk is a request the worker must refuse: published on subject (under
// mde.offboard.request.) with msgID ("" none), or raw with header.
type junk struct {
	name, subject, msgID, header, body string
	code                               string // default invalid_request
}

// junkRequests are bad requests of every kind a publisher or an attacker
// sends; m0 and m1 are devices of contoso's that none may reach.
func junkRequests(m0, m1 string) []junk {
	const forged = "\u001b[2J\r\n{\"level\":\"info\",\"msg\":\"FORGED\"}\u202e"
	fj, _ := json.Marshal(forged)
	utf16le := []byte{0xff, 0xfe}
	for _, u := range utf16.Encode([]rune(`{"requestId":"j-utf16","machineId":"` + m0 + `"}`)) {
		utf16le = append(utf16le, byte(u), byte(u>>8))
	}
	req := func(id, rest string) string { return `{"requestId":"` + id + `",` + rest + `}` }
	return []junk{
		{name: "case-variant twin", body: req("j-case", `"machineId":"`+m0+`","MACHINEID":"`+m1+`"`)},
		{name: "lower-case twin", body: req("j-lower", `"machineId":"`+m0+`","machineid":"`+m0+`"`)},
		{name: "huge attempt", body: req("j-huge", `"machineId":"`+m0+`","attempt":1e400`)},
		{name: "attempt past uint64", body: req("j-u64", `"machineId":"`+m0+`","attempt":18446744073709551616`)},
		{name: "float attempt", body: req("j-float", `"machineId":"`+m0+`","attempt":1.5`)},
		{name: "nested junk", body: req("j-nested", `"machineId":{"a":[1,{"b":null}]}`)},
		{name: "NUL in a string", body: "{\"requestId\":\"j-nul\",\"machineId\":\"" + m0 + "\x00\"}"},
		{name: "NUL after the object", body: req("j-nul2", `"machineId":"`+m0+`"`) + "\x00"},
		{name: "invalid UTF-8", body: req("j-utf8", `"machineId":"`+m0+`","comment":"`+"\xc3\x28"+`"`)},
		{name: "UTF-16 with a BOM", body: string(utf16le)},
		{name: "UTF-8 BOM", body: "\xef\xbb\xbf" + req("j-bom", `"machineId":"`+m0+`"`)},
		{name: "empty body", body: ""},
		{name: "null", body: "null"},
		{name: "array", body: `[` + req("j-array", `"machineId":"`+m0+`"`) + `]`},
		{name: "two objects", body: req("j-two", `"machineId":"`+m0+`"`) + req("j-two", `"machineId":"`+m1+`"`)},
		{name: "id with spaces", body: req("j-space", `"machineId":" `+m0[:20]+" "+m0[20:39]+`"`)},
		{name: "id of unicode digits", body: req("j-digits", `"machineId":"`+strings.Repeat("\u0661", 40)+`"`)},
		{name: "id of fullwidth hex", body: req("j-wide", `"machineId":"`+strings.Repeat("\uff41", 40)+`"`)},
		{name: "name with two final dots", body: req("j-dots", `"computerDnsName":"pc-0000.contoso.local.."`)},
		{name: "IDN name", body: req("j-idn", `"computerDnsName":"pc-ü.contoso.local"`)},
		{name: "long label", body: req("j-label", `"computerDnsName":"`+strings.Repeat("a", 64)+`.contoso.local"`)},
		{name: "name of forged text", body: req("j-name", `"computerDnsName":`+string(fj))},
		{name: "comment with control characters", body: req("j-ctl", `"machineId":"`+m0+`","comment":`+string(fj))},
		{name: "comment of 60 KB", body: req("j-60k", `"machineId":"`+m0+`","comment":"`+strings.Repeat("x", 60<<10)+`"`)},
		{name: "source a number", body: req("j-src1", `"machineId":"`+m0+`","source":5`)},
		{name: "source an object", body: req("j-src2", `"machineId":"`+m0+`","source":{"a":1}`)},
		{name: "source forged text", body: req("j-src3", `"machineId":"`+m0+`","source":`+string(fj))},
		{name: "source too long", body: req("j-src4", `"machineId":"`+m0+`","source":"`+strings.Repeat("s", 300)+`"`)},
		{name: "requestId forged text", body: `{"requestId":` + string(fj) + `,"machineId":"` + m0 + `"}`},
		{name: "tenant of another", body: req("j-tenant", `"machineId":"`+m0+`","tenant":"fabrikam"`)},
		{name: "tenant in upper case", body: req("j-tenant2", `"machineId":"`+m0+`","tenant":"CONTOSO"`)},
		{name: "no message id", msgID: "-", body: req("j-noid", `"machineId":"zz"`)},
		{name: "huge message id", msgID: strings.Repeat("i", 3000), body: req("j-bigid", `"machineId":"zz"`)},
		{name: "message id of another tenant", msgID: "fabrikam:j-other", body: req("j-other", `"machineId":"zz"`)},
		{name: "headers in odd case", header: "nats-msg-id: contoso:j-hdr\r\nmde-error-code: none\r\nMDE-ERROR-MESSAGE: " + "FORGED",
			body: req("j-hdr", `"machineId":"zz"`)},
		{name: "empty message id", header: "Nats-Msg-Id: ", body: req("j-emptyid", `"machineId":"zz"`)},
		{name: "bulk with a tail", subject: "contoso.bulk.extra", body: req("j-tail", `"machineId":"`+m0+`"`)},
		{name: "normal spelled out", subject: "contoso.normal", body: req("j-normal", `"machineId":"`+m0+`"`)},
		{name: "BULK", subject: "contoso.BULK", body: req("j-BULK", `"machineId":"`+m0+`"`)},
		{name: "tenant token in upper case", subject: "Contoso", body: req("j-upper", `"machineId":"`+m0+`"`), code: offboard.CodeUnknownTenant},
	}
}

// TestJunkRequests: every bad request gets one failed result with a clear
// code and a message that carries none of its raw text, a dead letter, and
// no API call; the worker goes on serving.
func TestJunkRequests(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso", "fabrikam"}, machines: 3})
	ms := e.tenants["contoso"].machines
	bySeq := e.resultsBySeq()
	cases := map[uint64]junk{}
	for i, j := range junkRequests(ms[0].ID, ms[1].ID) {
		subject := "mde.offboard.request." + cmpOr(j.subject, "contoso")
		if j.code == "" {
			j.code = offboard.CodeInvalidRequest
		}
		if j.header != "" {
			e.rawPublish(subject, j.header, []byte(j.body))
			cases[e.lastSeq()] = j
			continue
		}
		msgID := cmpOr(j.msgID, "contoso:junk-"+strconv.Itoa(i))
		if msgID == "-" {
			msgID = ""
		}
		cases[e.publish(subject, []byte(j.body), msgID).Sequence] = j
	}
	if err := jetstreamPublishErr(e, "mde.offboard.request.contoso", strings.Repeat("x", 1<<20)); err == nil {
		t.Error("a request of 1 MiB was taken by the stream")
	}
	// The worker goes on: a good request after them all is served.
	good := e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "good", "machineId": ms[2].ID}, "contoso:good").Sequence
	waitJunkAnswered(t, bySeq, cases, good)
	if r := bySeq.get(good); len(r) != 1 || r[0].Outcome != offboard.OutcomeCreated {
		t.Fatalf("good request after the junk: %+v, want created", r)
	}
	dead := e.deadBySeq(len(cases))
	for seq, j := range cases {
		checkJunkAnswer(t, j, bySeq.get(seq), dead[seq])
	}
	for _, c := range e.sim.Calls() {
		if c.MachineID != ms[2].ID {
			t.Errorf("API called for junk: %s %s", c.Method, c.Path)
		}
	}
	eventually(t, 10*time.Second, "request stream empty", func() bool { return e.streamMsgs(offboard.StreamRequests) == 0 })
	time.Sleep(200 * time.Millisecond) // let any second answer show itself
	if n := bySeq.count(); n != len(cases)+1 {
		t.Errorf("%d requests answered, want %d", n, len(cases)+1)
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func checkJunkAnswer(t *testing.T, j junk, rs []offboard.Result, dead jetstream.Msg) {
	t.Helper()
	if len(rs) != 1 {
		t.Errorf("%s: %d results, want one", j.name, len(rs))
		return
	}
	r := rs[0]
	if r.Outcome != offboard.OutcomeFailed || r.Error == nil || r.Error.Code != j.code {
		t.Errorf("%s: %s %+v, want failed %s", j.name, r.Outcome, r.Error, j.code)
		return
	}
	if junkText(r.Error.Message) || len(r.Error.Message) > 300 {
		t.Errorf("%s: message %+q holds raw input", j.name, r.Error.Message)
	}
	for _, f := range []string{r.RequestID, r.MachineID, r.ComputerDNSName, r.RequestedBy, r.Source} {
		if junkText(f) {
			t.Errorf("%s: result echoes %+q", j.name, f)
		}
	}
	if dead == nil {
		t.Errorf("%s: no dead letter", j.name)
		return
	}
	h := dead.Headers()
	if h.Get(offboard.HeaderErrorCode) != j.code || h.Get(offboard.HeaderErrorMessage) != r.Error.Message || string(dead.Data()) != j.body {
		t.Errorf("%s: dead letter %v %q, want the original body, code %s and message %q", j.name, h, dead.Data(), j.code, r.Error.Message)
	}
	for k, vs := range h {
		if slices.Contains(vs, "FORGED") || slices.Contains(vs, "none") {
			t.Errorf("%s: dead letter keeps a forged header %s: %q", j.name, k, vs)
		}
	}
}

// junkText says whether s holds text that could forge a log line or
// terminal output: a control or formatting character, or what stood for
// invalid UTF-8.
func junkText(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool {
		return r == unicode.ReplacementChar || unicode.IsControl(r) || unicode.Is(unicode.Cf, r)
	})
}

// seqResults are results by the request's place in the stream.
type seqResults struct {
	mu    sync.Mutex
	bySeq map[uint64][]offboard.Result
}

func (s *seqResults) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.bySeq)
}

func (s *seqResults) get(seq uint64) []offboard.Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bySeq[seq]
}

func (e *env) resultsBySeq() *seqResults {
	e.t.Helper()
	s := &seqResults{bySeq: map[uint64][]offboard.Result{}}
	cons, err := e.js.OrderedConsumer(e.t.Context(), offboard.StreamResults, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"mde.offboard.result.>"}})
	if err != nil {
		e.t.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var r offboard.Result
		if err := json.Unmarshal(m.Data(), &r); err != nil {
			e.t.Errorf("result is not JSON: %v", err)
			return
		}
		s.mu.Lock()
		s.bySeq[r.RequestSeq] = append(s.bySeq[r.RequestSeq], r)
		s.mu.Unlock()
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(cc.Stop)
	return s
}

// deadBySeq reads n dead letters, by their request's place.
func (e *env) deadBySeq(n int) map[uint64]jetstream.Msg {
	e.t.Helper()
	cons, err := e.js.OrderedConsumer(e.t.Context(), offboard.StreamDead, jetstream.OrderedConsumerConfig{})
	if err != nil {
		e.t.Fatal(err)
	}
	dead := map[uint64]jetstream.Msg{}
	for range n {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			e.t.Errorf("dead letter %d of %d: %v", len(dead)+1, n, err)
			break
		}
		seq, _ := strconv.ParseUint(m.Headers().Get(offboard.HeaderRequestSeq), 10, 64)
		if dead[seq] != nil {
			e.t.Errorf("two dead letters of request %d", seq)
		}
		dead[seq] = m
	}
	return dead
}

// lastSeq is the request stream's last sequence.
func (e *env) lastSeq() uint64 {
	e.t.Helper()
	s, err := e.js.Stream(e.t.Context(), offboard.StreamRequests)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	return info.State.LastSeq
}

// waitJunkAnswered waits for an answer to every junk request and the good
// one after them, naming those still unanswered when it gives up: a
// minute, as a step that times out on a loaded machine leaves its
// request to come back 5 s later.
func waitJunkAnswered(t *testing.T, bySeq *seqResults, cases map[uint64]junk, good uint64) {
	t.Helper()
	// Each request by its place: a count of the places answered can be
	// reached by a result of another place before the good one's.
	deadline := time.Now().Add(time.Minute)
	for {
		var left []string
		for seq, j := range cases {
			if len(bySeq.get(seq)) == 0 {
				left = append(left, fmt.Sprintf("%d (%s)", seq, j.name))
			}
		}
		if len(bySeq.get(good)) == 0 {
			left = append(left, fmt.Sprintf("%d (the good one)", good))
		}
		switch {
		case len(left) == 0:
			return
		case time.Now().After(deadline):
			t.Fatalf("not within a minute: every request answered; unanswered: %v", left)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
