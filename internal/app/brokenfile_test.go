package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/contoso-secops/mde-offboard/offboard"
)

// TestBrokenCredentialFileIsLoggedAtOnce: a secret file replaced with
// something that cannot be used (here a key put in its place) is
// warned of as soon as the worker finds it, naming the tenant and the
// setting, not when the last token expires, up to an hour later, and
// every call fails. Meanwhile the last token serves.
func TestBrokenCredentialFileIsLoggedAtOnce(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.WarnLevel)
	e := setup(t, envConfig{machines: 2, tenants: []string{"contoso"}, logger: zap.New(core)})
	c := e.collect("mde.offboard.result.>")
	tt := e.tenants["contoso"]
	if r := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "b-0", "machineId": tt.machines[0].ID}); r.Outcome != offboard.OutcomeCreated {
		t.Fatalf("first request: %+v", r)
	}
	const key = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"
	path := filepath.Join(e.dir, "contoso.secret")
	if err := os.WriteFile(path, []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(2 * time.Second)
	_ = os.Chtimes(path, later, later)
	time.Sleep(1100 * time.Millisecond) // the file is looked at once a second
	if r := e.one(c, "mde.offboard.request.contoso", map[string]any{"requestId": "b-1", "machineId": tt.machines[1].ID}); r.Outcome != offboard.OutcomeCreated {
		t.Fatalf("with the last token still good: %+v, want created", r)
	}
	found := logs.FilterMessageSnippet("cannot be built again").FilterField(zap.String("tenant", "contoso"))
	if found.Len() != 1 {
		t.Fatalf("%d warnings that the changed file cannot be used, want 1; all: %v", found.Len(), logs.All())
	}
	entry := found.All()[0]
	text := entry.Message
	for _, f := range entry.Context {
		text += " " + f.String
		if f.Interface != nil {
			if err, ok := f.Interface.(error); ok {
				text += " " + err.Error()
			}
		}
	}
	if !strings.Contains(text, "clientSecretFile") || strings.Contains(text, "MIIEvQ") {
		t.Errorf("warning %q: want it to name clientSecretFile and not show the file", text)
	}
}
