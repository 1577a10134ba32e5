package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
)

// stepsLoop runs, by hand and without the worker, the steps the worker's
// guarantees take for a new request named by machine id, over the same
// NATS server and simulator: what those steps cost before any of the
// worker's own code. Each goroutine takes one request after another:
//
//   - pull it;
//   - write the ledger's "calling" entry (a create in a key-value bucket)
//     and a quota journal entry (a publish), side by side;
//   - send the offboard call (HTTPS, bearer token, JSON body);
//   - publish the result and write the ledger's final entry over the
//     "calling" one, side by side;
//   - double-ack the request, then delete it from its stream.
//
// One ordered consumer reads the journal back, as each worker's feed
// does. Where the loop and the worker differ, the loop is given the
// easier part, so that its rate is a ceiling for the worker rather than
// a floor: 2 × inFlight goroutines per tenant, as many as the worker's
// requests calling and storing their results at once, each of which may
// call; a journal entry per call appended without the compare-and-swap
// on the tenant's last entry that keeps the worker's writes one at a
// time (the worker shares an entry among the calls that start together,
// and writes the calls' ends in later ones; here no end is written); and
// no consumer for requests of unconfigured tenants. It returns the rate
// of stored results.
func (h *harness) stepsLoop(b *testing.B, names []string, per, reqBytes, resultBytes, inFlight int) float64 {
	b.Helper()
	ctx := b.Context()
	if _, err := h.js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "STEPS_QUOTA", Subjects: []string{"steps.quota.>"}, Storage: jetstream.FileStorage, MaxAge: 2 * time.Hour,
	}); err != nil {
		b.Fatal(err)
	}
	ledger, err := h.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: "STEPS_LEDGER", History: 1, TTL: 30 * 24 * time.Hour, Storage: jetstream.FileStorage,
	})
	if err != nil {
		b.Fatal(err)
	}
	var journalRead atomic.Int64
	feed, err := h.js.OrderedConsumer(ctx, "STEPS_QUOTA", jetstream.OrderedConsumerConfig{})
	if err != nil {
		b.Fatal(err)
	}
	cc, err := feed.Consume(func(m jetstream.Msg) {
		var ev map[string]any
		if json.Unmarshal(m.Data(), &ev) == nil {
			journalRead.Add(1)
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Stop()
	consumers := h.loopRequests(b, "steps", jetstream.LimitsPolicy, names, per, reqBytes)
	requests, err := h.js.Stream(ctx, "STEPS_REQUESTS")
	if err != nil {
		b.Fatal(err)
	}

	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: h.sim.CertPool(), MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: len(names)*inFlight + 2,
	}}
	defer hc.CloseIdleConnections()
	tokens := make([]string, len(names))
	for i, t := range h.tenants {
		if tokens[i], err = simToken(ctx, hc, h.base, t); err != nil {
			b.Fatal(err)
		}
	}
	result := bytes.Repeat([]byte{'y'}, resultBytes)
	rate, err := h.runLoop(b, "steps", consumers, per, 2*inFlight, func(ctx context.Context, i int, msg jetstream.Msg) error {
		return h.steps(ctx, hc, tokens[i], ledger, requests, h.tenants[i], msg, result)
	})
	if err != nil {
		b.Fatal(err)
	}
	if n := journalRead.Load(); n == 0 {
		b.Fatal("the steps loop's journal feed read nothing")
	}
	return rate
}

// steps takes one request of the steps loop through to its delete.
func (h *harness) steps(ctx context.Context, hc *http.Client, token string, ledger jetstream.KeyValue, requests jetstream.Stream,
	t *tenant, msg jetstream.Msg, result []byte,
) error {
	meta, err := msg.Metadata()
	if err != nil {
		return err
	}
	name, tenantIndex := t.name, t.index
	msgID := msg.Headers().Get(jetstream.MsgIDHeader)
	var device int
	if _, err := fmt.Sscanf(strings.TrimPrefix(msgID, name+":r"), "%d", &device); err != nil {
		return fmt.Errorf("request %q: %w", msgID, err)
	}
	key := fmt.Sprintf("%s.r%07d", name, device)
	started := time.Now().UTC()

	calling, _ := json.Marshal(map[string]any{"state": "calling", "seq": meta.Sequence.Stream, "machineId": machineID(tenantIndex, device), "started": started})
	entry, _ := json.Marshal(map[string]any{"writer": "steps", "written": started.UnixNano(),
		"reserved": []map[string]any{{"api": mdesim.APIOffboard, "id": meta.Sequence.Stream, "at": started.Add(90 * time.Second).UnixNano()}}})
	journal, err := h.js.PublishAsync("steps.quota."+name, entry)
	if err != nil {
		return err
	}
	rev, err := ledger.Create(ctx, key, calling)
	if err != nil {
		return fmt.Errorf("ledger create %s: %w", key, err)
	}
	if err := waitAck(ctx, journal); err != nil {
		return fmt.Errorf("journal entry: %w", err)
	}

	if err := simOffboard(ctx, hc, h.base, token, machineID(tenantIndex, device)); err != nil {
		return err
	}

	out := nats.NewMsg("steps.result." + name)
	out.Data = result
	out.Header.Set(jetstream.MsgIDHeader, "result:"+msgID)
	pub, err := h.js.PublishMsgAsync(out)
	if err != nil {
		return err
	}
	final := nats.NewMsg("$KV.STEPS_LEDGER." + key)
	final.Data = fmt.Appendf(nil, `{"state":"done","seq":%d,"result":%q}`, meta.Sequence.Stream, result)
	done, err := h.js.PublishMsgAsync(final, jetstream.WithExpectLastSequencePerSubject(rev))
	if err != nil {
		return err
	}
	for _, f := range []jetstream.PubAckFuture{pub, done} {
		if err := waitAck(ctx, f); err != nil {
			return fmt.Errorf("result or ledger entry: %w", err)
		}
	}
	if err := msg.DoubleAck(ctx); err != nil {
		return err
	}
	return requests.DeleteMsg(ctx, meta.Sequence.Stream)
}

// waitAck waits for an asynchronous publish's acknowledgement.
func waitAck(ctx context.Context, f jetstream.PubAckFuture) error {
	select {
	case <-f.Ok():
		return nil
	case err := <-f.Err():
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// simToken gets an app-only token for tenant t from the simulator.
func simToken(ctx context.Context, hc *http.Client, base string, t *tenant) (string, error) {
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {t.clientID}, "client_secret": {t.secret}, "scope": {mdesim.ScopeSecurityCenter}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/"+t.id+"/oauth2/v2.0/token", strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil {
		return "", fmt.Errorf("token of tenant %s: status %d: %w", t.name, resp.StatusCode, err)
	}
	if tok.AccessToken == "" {
		return "", fmt.Errorf("token of tenant %s: status %d, no access token", t.name, resp.StatusCode)
	}
	return tok.AccessToken, nil
}

// simOffboard sends one offboard call to the simulator and reads its
// Machine Action.
func simOffboard(ctx context.Context, hc *http.Client, base, token, machine string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/machines/"+machine+"/offboard",
		strings.NewReader(`{"Comment":"offboarded by the steps loop"}`))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var action struct {
		ID string `json:"id"`
	}
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(data, &action) != nil || action.ID == "" {
		return fmt.Errorf("offboard %s: status %d: %.200s", machine, resp.StatusCode, data)
	}
	return nil
}
