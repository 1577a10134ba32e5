package app

import (
	"bufio"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// rawPublish sends one message with headers over the NATS protocol, as
// other clients may, with a header name the Go client would refuse.
func (e *env) rawPublish(subject, header string, body []byte) {
	e.t.Helper()
	u, err := url.Parse(e.app.NATSURL())
	if err != nil {
		e.t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	if _, err := r.ReadString('\n'); err != nil { // INFO
		e.t.Fatal(err)
	}
	hdr := "NATS/1.0\r\n" + header + "\r\n\r\n"
	fmt.Fprintf(conn, "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"protocol\":1}\r\n")
	fmt.Fprintf(conn, "HPUB %s %d %d\r\n%s%s\r\nPING\r\n", subject, len(hdr), len(hdr)+len(body), hdr, body)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			e.t.Fatalf("raw publish: %v", err)
		}
		if strings.HasPrefix(line, "-ERR") {
			e.t.Fatalf("raw publish: %s", line)
		}
		if strings.HasPrefix(line, "PONG") {
			return
		}
	}
}

// TestHeaderTheClientCannotSendIsKeptInTheDeadLetter: requests published
// by another client with a header name the Go client refuses to send
// ("X-Ref(id)") are answered once, dead-lettered with that header kept as
// a value, and leave the stream; the tenant goes on. Its dead letter used
// to fail to publish, and the request came back every few seconds, for
// good, holding one of the tenant's places.
func TestHeaderTheClientCannotSendIsKeptInTheDeadLetter(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1})
	c := e.collect("mde.offboard.result.>")
	// One that fails its checks, one that fails at the API.
	e.rawPublish("mde.offboard.request.contoso", "X-Ref(id): 42", []byte(`{"requestId":"h1","machineId":"zz"}`))
	e.rawPublish("mde.offboard.request.contoso", "X-Ref(id): 43", []byte(`{"requestId":"h2","machineId":"`+newID()+`"}`))
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "ok", "machineId": e.tenants["contoso"].machines[0].ID}, "contoso:ok")
	got := c.wait(t, 3, 20*time.Second)
	for id, code := range map[string]string{"h1": offboard.CodeInvalidRequest, "h2": offboard.CodeMachineNotFound} {
		if rs := got["contoso/"+id]; len(rs) != 1 || rs[0].Error == nil || rs[0].Error.Code != code {
			t.Errorf("%s: %+v, want one result failed with %s", id, rs, code)
		}
	}
	if rs := got["contoso/ok"]; len(rs) != 1 || rs[0].Outcome != offboard.OutcomeCreated {
		t.Errorf("ok: %+v, want created", rs)
	}
	eventually(t, 10*time.Second, "request stream empty", func() bool { return e.streamMsgs(offboard.StreamRequests) == 0 })
	cons, err := e.js.OrderedConsumer(t.Context(), offboard.StreamDead, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	kept := map[string]bool{}
	for range 2 {
		dead, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		kept[dead.Headers().Get(offboard.HeaderOriginalHeader)] = true
	}
	if !kept["X-Ref(id): 42"] || !kept["X-Ref(id): 43"] {
		t.Errorf("dead letters keep %v under %s, want both X-Ref(id) headers", kept, offboard.HeaderOriginalHeader)
	}
}

// TestDeadLetterIDOfAnotherRequestsPlace: a request whose message id has
// the form of the dead-letter id of another request's place
// (dead-seq:<epoch>:<seq>) does not take that request's dead letter: both
// failed requests keep theirs. The dead letter once kept the publisher's
// id, and the stream dropped the other as a duplicate.
func TestDeadLetterIDOfAnotherRequestsPlace(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, machines: 1})
	c := e.collect("mde.offboard.result.>")
	requests, err := e.js.Stream(t.Context(), offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	info, err := requests.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	next := offboard.Seq{Epoch: info.Created.UnixNano(), N: info.State.LastSeq + 2}
	e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "taker", "machineId": "zz"}, "dead-seq:"+next.String())
	if ack := e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "victim", "machineId": "zz"}, ""); ack.Sequence != next.N {
		t.Fatalf("victim stored at %d, want %d", ack.Sequence, next.N)
	}
	c.wait(t, 2, 20*time.Second)
	eventually(t, 10*time.Second, "two dead letters", func() bool { return e.streamMsgs(offboard.StreamDead) == 2 })
}
