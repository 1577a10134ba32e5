package offboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// A service that retires devices publishes an offboard request for tenant
// "contoso" and reads the worker's answer from the tenant's result subject.
func ExamplePublish() {
	ctx := context.Background()
	// startWorker runs NATS, a worker and the Defender simulator in this
	// process (see worker_test.go); in production, connect to your NATS.
	js, stop, err := startWorker(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer stop()

	req := offboard.Request{
		RequestID:   "CHG0012345",
		MachineID:   "1e5bc9d7e413ddd7902c2932e418702b84d0cc07",
		Comment:     "Retired in CMDB (CHG0012345)",
		RequestedBy: "cmdb-sync",
	}
	if _, err := offboard.Publish(ctx, js, offboard.Subjects{}, "contoso", offboard.Normal, req); err != nil {
		log.Fatal(err)
	}

	// Every request gets one result, on mde.offboard.result.<tenant>.
	results, err := js.OrderedConsumer(ctx, offboard.StreamResults, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{offboard.Subjects{}.Result("contoso")},
	})
	if err != nil {
		log.Fatal(err)
	}
	msg, err := results.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		log.Fatal(err)
	}
	var res offboard.Result
	if err := json.Unmarshal(msg.Data(), &res); err != nil {
		log.Fatal(err)
	}
	var action struct{ Type, Status string } // the Machine Action as the API returned it
	if err := json.Unmarshal(res.MachineAction, &action); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: %s, %s action %s\n", res.RequestID, res.Outcome, action.Type, action.Status)
	// Output: CHG0012345: created, Offboard action Pending
}
