package app

import (
	"strings"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestAmbiguousNameOnPartOfTheList: a lookup whose answer holds two
// devices of the name and says more of the list follows
// (@odata.nextLink) is ambiguous_machine, and its message says at least
// two devices bear the name, and that more may: the candidates are not
// all of them. It used to say "2 devices are named ..." of a name three
// devices share, as if the candidates listed every one.
func TestAmbiguousNameOnPartOfTheList(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{tenants: []string{"contoso"}, sim: mdesim.Options{MaxPage: 2}})
	c := e.collect("mde.offboard.result.>")
	tt := e.tenants["contoso"]
	for range 3 {
		e.sim.AddMachine(tt.tenantID, mdesim.Machine{ID: newID(), ComputerDNSName: "pool.contoso.local", LastSeen: time.Now().Add(-time.Hour)})
	}
	r := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "pool", "computerDnsName": "pool.contoso.local"})
	if r.Outcome != offboard.OutcomeFailed || r.Error == nil || r.Error.Code != offboard.CodeAmbiguousMachine || len(r.Error.Candidates) != 2 {
		t.Fatalf("result %s %+v; want failed %s with the 2 devices of the page", r.Outcome, r.Error, offboard.CodeAmbiguousMachine)
	}
	if !strings.HasPrefix(r.Error.Message, "at least 2 devices are named") || !strings.Contains(r.Error.Message, "@odata.nextLink") {
		t.Errorf("message %q; want it to say at least 2 devices bear the name, and that the list goes on", r.Error.Message)
	}
}
