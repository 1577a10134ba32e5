package worker

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/jonboulle/clockwork"

	"github.com/contoso-secops/mde-offboard/internal/limiter"
	"github.com/contoso-secops/mde-offboard/internal/mde"
)

// proxyLooks answers its first n looks with an HTTP proxy's page of
// status: no error object of the API's in it.
func proxyLooks(clock clockwork.Clock, status, n int) *firstLooks {
	return &firstLooks{scriptedActions: scriptedFor(clock, "Succeeded"), n: n, first: func(p *limiter.Permit) *mde.Verdict {
		p.Complete(clock.Now())
		h := http.Header{"Content-Type": []string{"text/html"}}
		page := fmt.Sprintf("<html><body><h1>%d %s</h1></body></html>", status, http.StatusText(status))
		return mde.Classify(status, h, []byte(page), clock.Now())
	}}
}

// TestTrackingOutlivesAProxysRefusal: a 4xx page that is not the API's
// own answer (an egress proxy asking for its credentials, a gateway
// refusing the request) says nothing about the action, as a 404 page
// does not: it stays followed, and its status is published once the API
// answers again. Taken as the API's final refusal, the first such page
// gave every followed action up, with a final event, for good.
func TestTrackingOutlivesAProxysRefusal(t *testing.T) {
	t.Parallel()
	for _, status := range []int{http.StatusBadRequest, http.StatusProxyAuthRequired, http.StatusMisdirectedRequest} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			t.Parallel()
			wantFollowedToTheEnd(t, func(clock clockwork.Clock) *firstLooks { return proxyLooks(clock, status, 3) })
		})
	}
}
