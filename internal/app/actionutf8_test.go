package app

import (
	"bytes"
	"net/http"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestActionNotUTF8GivesAResultInUTF8: an offboard answer whose action
// holds bytes that are not UTF-8 in a string (a gateway that transcodes,
// a field in Windows-1252) gives a result that is UTF-8, as JSON text
// must be (RFC 8259), those bytes read as U+FFFD, as Go's reader reads
// them. The action used to go into the result with its bytes as they
// came, and a strict reader (Python's, .NET's) of the results stream
// could not read the result at all.
func TestActionNotUTF8GivesAResultInUTF8(t *testing.T) {
	t.Parallel()
	e := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}, noStart: true})
	withRewrite(e, func(req *http.Request, status int, body []byte) []byte {
		if isOffboard(req) && status/100 == 2 {
			return bytes.Replace(body, []byte(`"requestSource":"PublicApi"`), []byte("\"requestSource\":\"Public\xe9Api\""), 1)
		}
		return body
	})
	e.start()
	raw := e.collectRaw()
	seq := e.publish("mde.offboard.request.contoso", map[string]any{"requestId": "latin1", "machineId": e.tenants["contoso"].machines[0].ID}, "contoso:latin1").Sequence
	eventually(t, 20*time.Second, "latin1 answered", func() bool { return len(raw.get(seq)) > 0 })
	res := raw.get(seq)[0]
	if !bytes.Contains(res, []byte(`"outcome":"`+offboard.OutcomeCreated+`"`)) {
		t.Fatalf("result %s, want created", res)
	}
	if !utf8.Valid(res) {
		t.Errorf("the result is not UTF-8: %q", res)
	}
	if !bytes.Contains(res, []byte(`"requestSource":"Public`+"\ufffd"+`Api"`)) {
		t.Errorf("result %s: the action's requestSource is not Public\ufffdApi", res)
	}
}
