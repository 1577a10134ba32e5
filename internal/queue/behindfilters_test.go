package queue

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestReadUndeliveredReadsOnlyTheLaneOfFilterSubjects: a tenant's
// consumer defined by hand for --no-setup with filter_subjects (a list of
// one subject, which the server keeps as a list: filter_subject is then
// empty) delivers its lane alone, and ReadUndelivered reads that lane
// alone too, not the whole request stream. Before, the read's consumer
// took the empty filter_subject and read every tenant's requests: a
// cancel of contoso's campaign answered, as contoso's, and deleted
// fabrikam's requests whose ids had that campaign's form.
func TestReadUndeliveredReadsOnlyTheLaneOfFilterSubjects(t *testing.T) {
	t.Parallel()
	_, js := connect(t)
	s := Settings{Tenants: []string{"contoso", "fabrikam"}}
	if _, err := Ensure(t.Context(), js, s); err != nil {
		t.Fatal(err)
	}
	subj := s.WithDefaults().Subjects
	lane := subj.Request("contoso", offboard.Bulk)
	name := ConsumerName("contoso", offboard.Bulk)
	if err := js.DeleteConsumer(t.Context(), offboard.StreamRequests, name); err != nil {
		t.Fatal(err)
	}
	cfg := s.Consumers()[1]
	if cfg.Durable != name {
		t.Fatalf("consumer %s, want %s", cfg.Durable, name)
	}
	cfg.FilterSubject, cfg.FilterSubjects = "", []string{lane}
	cons, err := js.CreateConsumer(t.Context(), offboard.StreamRequests, cfg)
	if err != nil {
		t.Fatal(err)
	}
	const total = 300
	for i := range total {
		for _, subject := range []string{lane, subj.Request("contoso", offboard.Normal), subj.Request("fabrikam", offboard.Bulk)} {
			if _, err := js.PublishAsync(subject, fmt.Appendf(nil, "%d", i+1)); err != nil {
				t.Fatal(err)
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("not stored within 30 s")
	}
	batch, err := cons.Fetch(200, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		if m.Subject() != lane {
			t.Fatalf("the consumer delivered %s, want only %s", m.Subject(), lane)
		}
	}
	requests, err := js.Stream(t.Context(), offboard.StreamRequests)
	if err != nil {
		t.Fatal(err)
	}
	others := map[string]int{}
	read, err := ReadUndelivered(t.Context(), requests, cons, func(m *jetstream.RawStreamMsg) {
		if m.Subject != lane {
			others[m.Subject]++
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(others) > 0 || read != total-200 {
		t.Errorf("read %d requests, of them %v of other lanes; want the lane's %d alone", read, others, total-200)
	}
}
