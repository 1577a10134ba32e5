package mdesim_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/contoso-secops/mde-offboard/internal/mde/mdesim"
)

// With the default page size, a list asked for without $top that holds
// more than a page is cut short at 10,000 records, as with a smaller
// MaxPage: the answer carries @odata.nextLink to the rest, not a first
// page that reads as the whole list.
func TestDefaultPageLinksTheRest(t *testing.T) {
	s := newSim(t, mdesim.Options{Unlimited: true})
	before := len(s.Machines(tenantA))
	for _, m := range mdesim.Inventory(10001-before, 7, t0) {
		s.AddMachine(tenantA, m)
	}
	tok := s.token(t, tenantA, clientA, secretA)
	page := func(path string) (n int, next string) {
		t.Helper()
		r := s.do(t, http.MethodGet, path, tok, "", "")
		if r.status != http.StatusOK {
			t.Fatalf("GET %s: status %d", path, r.status)
		}
		var l struct {
			Value []json.RawMessage `json:"value"`
			Next  string            `json:"@odata.nextLink"`
		}
		if err := json.Unmarshal(r.body, &l); err != nil {
			t.Fatal(err)
		}
		return len(l.Value), l.Next
	}
	n, next := page("/api/machines")
	if n != 10000 || next == "" {
		t.Fatalf("first page: %d records, nextLink %q; want 10000 and a link to the rest", n, next)
	}
	if n, next = page(strings.TrimPrefix(next, s.base)); n != 1 || next != "" {
		t.Errorf("second page: %d records, nextLink %q; want 1 and none", n, next)
	}
	// $top=10000 asks for no more than the page holds: no link.
	if n, next = page("/api/machines?$top=10000"); n != 10000 || next != "" {
		t.Errorf("$top=10000: %d records, nextLink %q; want 10000 and none", n, next)
	}
}
