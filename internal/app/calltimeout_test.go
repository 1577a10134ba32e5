package app

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/contoso-secops/mde-offboard/internal/config"
	"github.com/contoso-secops/mde-offboard/internal/mde"
)

// TestTransportLetsACallTakeItsCallTimeout: the tenants' HTTP client ends
// no call before --call-timeout, which bounds each call (its context):
// its own bounds, the answer's headers and the whole exchange, only catch
// what no context bounds. Fixed at 30 s and 60 s, they failed every call
// that a --call-timeout of minutes let wait for a slow API or gateway.
func TestTransportLetsACallTakeItsCallTimeout(t *testing.T) {
	t.Parallel()
	var cut []string
	for _, callTimeout := range []time.Duration{100 * time.Millisecond, mde.DefaultTimeout, 45 * time.Second, 2 * time.Minute, 40 * time.Minute} {
		clients, err := transports([]*config.Tenant{{MaxInFlight: 4}}, -1, callTimeout)
		if err != nil {
			t.Fatal(err)
		}
		hc := clients[""]
		if h := hc.Transport.(*http.Transport).ResponseHeaderTimeout; h != 0 && h < callTimeout {
			cut = append(cut, fmt.Sprintf("--call-timeout %s: headers awaited %s", callTimeout, h))
		}
		if hc.Timeout != 0 && hc.Timeout < callTimeout {
			cut = append(cut, fmt.Sprintf("--call-timeout %s: a call ended at %s", callTimeout, hc.Timeout))
		}
		// Within --call-timeout's default, the bounds stay as they were.
		if h := hc.Transport.(*http.Transport).ResponseHeaderTimeout; callTimeout <= mde.DefaultTimeout && (h != 30*time.Second || hc.Timeout != time.Minute) {
			t.Errorf("--call-timeout %s: headers awaited %s, a call ended at %s; want 30s and 1m", callTimeout, h, hc.Timeout)
		}
	}
	if len(cut) > 0 {
		t.Errorf("%d bounds end a call before its --call-timeout: %v", len(cut), cut)
	}
}
