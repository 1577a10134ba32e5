package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// pub is one message of the batch.
type pub struct {
	tenant string
	prio   offboard.Priority
	req    offboard.Request // published with offboard.Publish
	// raw, when set, is published as it is, with the message id msgID,
	// instead of req: what a well-behaved publisher would not send.
	raw   []byte
	msgID string
}

type sampleBatch struct {
	msgs    []pub
	results int // results to wait for
}

// sample builds the demo batch: CMDB events by id and by name, a bulk
// campaign, a dry run, a duplicate, a device on an unsupported OS, an
// ambiguous name, a bad request and a request for an unconfigured tenant.
func sample(tenants []*demoTenant) sampleBatch {
	var b sampleBatch
	add := func(p pub, result bool) {
		b.msgs = append(b.msgs, p)
		if result {
			b.results++
		}
	}
	for _, t := range tenants {
		for _, p := range tenantSample(t) {
			add(p, true)
		}
	}
	contoso := tenants[0]
	// The same CMDB event delivered twice under another message id: the
	// stream keeps both, the worker's ledger makes one action of them.
	repeat, _ := json.Marshal(cmdbRequest("contoso-cmdb-0000", contoso.machines[0].ID, ""))
	add(pub{tenant: contoso.name, prio: offboard.Normal, raw: repeat, msgID: "contoso-cmdb-0000-redelivered"}, false)
	add(pub{tenant: contoso.name, prio: offboard.Normal, req: cmdbRequest("contoso-byname-0003", "", "pc-0003.contoso.local")}, true)
	// Malformed: offboard.Publish would refuse it; the worker answers it.
	add(pub{tenant: contoso.name, prio: offboard.Normal, raw: []byte(`{"requestId":"contoso-bad-0001","machineId":"../../machines/1"}`),
		msgID: offboard.RequestMsgID(contoso.name, "contoso-bad-0001", 1)}, true)
	add(pub{tenant: "northwind", prio: offboard.Normal, req: cmdbRequest("northwind-0001", strings.Repeat("0", 40), "")}, true)
	return b
}

// tenantSample is one tenant's part of the batch. A bulk campaign comes
// first: normal requests published after it still go first.
func tenantSample(t *demoTenant) []pub {
	var ps []pub
	for i := 10; i < 28; i++ {
		ps = append(ps, pub{tenant: t.name, prio: offboard.Bulk, req: cmdbRequest(fmt.Sprintf("%s-campaign-%04d", t.name, i), t.machines[i].ID, "")})
	}
	for i := range 3 {
		ps = append(ps, pub{tenant: t.name, prio: offboard.Normal, req: cmdbRequest(fmt.Sprintf("%s-cmdb-%04d", t.name, i), t.machines[i].ID, "")})
	}
	dryRun := cmdbRequest(t.name+"-dryrun-0005", t.machines[5].ID, "")
	dryRun.DryRun = true
	return append(ps,
		pub{tenant: t.name, prio: offboard.Normal, req: cmdbRequest(t.name+"-byname-0004", "", t.machines[4].ComputerDNSName)},
		pub{tenant: t.name, prio: offboard.Normal, req: dryRun},
		pub{tenant: t.name, prio: offboard.Normal, req: cmdbRequest(t.name+"-linux-0029", t.machines[29].ID, "")},
	)
}

// cmdbRequest is a request as the CMDB sync sends it, for a device by id
// or by name; its source names a change after the id's last four
// characters.
func cmdbRequest(id, machineID, name string) offboard.Request {
	return offboard.Request{
		RequestID: id, MachineID: machineID, ComputerDNSName: name,
		RequestedBy: "cmdb-sync", Source: "servicenow:CHG" + id[len(id)-4:],
	}
}

// publish publishes the batch in order.
func (b sampleBatch) publish(ctx context.Context, js jetstream.JetStream) error {
	var subjects offboard.Subjects
	for _, p := range b.msgs {
		if p.raw == nil {
			if _, err := offboard.Publish(ctx, js, subjects, p.tenant, p.prio, p.req); err != nil {
				return err
			}
			continue
		}
		m := nats.NewMsg(subjects.Request(p.tenant, p.prio))
		m.Data = p.raw
		m.Header.Set(jetstream.MsgIDHeader, p.msgID)
		if _, err := js.PublishMsg(ctx, m); err != nil {
			return fmt.Errorf("publish to %s: %w", m.Subject, err)
		}
	}
	return nil
}
