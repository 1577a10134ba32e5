package worker

import (
	"testing"

	"go.uber.org/zap"

	"github.com/contoso-secops/mde-offboard/internal/queue"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestPinned: a request by name is kept on the device of its id's
// "calling" entry when that entry is its own message's, or another
// message's for the same name (case and a final dot aside), a dry run's
// too; never for a request by id, a claim, or another message's entry for
// another name or of a release that did not record it.
func TestPinned(t *testing.T) {
	t.Parallel()
	const (
		id   = "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
		name = "pc-1.contoso.local"
	)
	calling := func(seq uint64, name string) *queue.Entry {
		return &queue.Entry{State: queue.StateCalling, Seq: seq, MachineID: id, ComputerDNSName: name}
	}
	for _, tc := range []struct {
		what  string
		req   offboard.Request
		entry *queue.Entry
		want  string
	}{
		{"own entry", offboard.Request{ComputerDNSName: name}, calling(7, name), id},
		{"own entry of an earlier release", offboard.Request{ComputerDNSName: name}, calling(7, ""), id},
		{"another message, same name", offboard.Request{ComputerDNSName: "PC-1.contoso.local."}, calling(3, name), id},
		{"another message, another name", offboard.Request{ComputerDNSName: "pc-2.contoso.local"}, calling(3, name), ""},
		{"another message of an earlier release", offboard.Request{ComputerDNSName: name}, calling(3, ""), ""},
		{"no entry", offboard.Request{ComputerDNSName: name}, nil, ""},
		{"claimed", offboard.Request{ComputerDNSName: name}, &queue.Entry{State: queue.StateClaimed, Seq: 7}, ""},
		{"a dry run, another message, same name", offboard.Request{ComputerDNSName: name, DryRun: true}, calling(3, name), id},
		{"a dry run, another message, another name", offboard.Request{ComputerDNSName: "pc-2.contoso.local", DryRun: true}, calling(3, name), ""},
		{"by id", offboard.Request{MachineID: "ffffffffffffffffffffffffffffffffffffffff"}, calling(7, ""), ""},
	} {
		j := &job{seq: 7, req: tc.req, entry: tc.entry, log: zap.NewNop()}
		if got := j.pinned(); got != tc.want {
			t.Errorf("%s: pinned %q, want %q", tc.what, got, tc.want)
		}
	}
}
