package config

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestCommentTemplateNestedCallsAreBounded: without a loop, a template
// can still double what it builds at each call it nests, with js or
// printf %q (each escapes the backslashes the call within wrote): thirty
// of them build gigabytes in memory, at --check-config, at the start and
// for every request, before a byte is written. Each function's output is
// cut where the comment would be. Not parallel: it counts the bytes the
// process allocates.
func TestCommentTemplateNestedCallsAreBounded(t *testing.T) {
	for _, fn := range []string{"js", `printf "%q"`, "html", "urlquery", "print", "println"} {
		const depth = 30
		tmpl := strings.Repeat(fn+" (", depth) + `printf "%s" "\\<&%"` + strings.Repeat(")", depth)
		data := []byte("tenants:" + okTenant + "    comment: '{{" + tmpl + "}} {{.RequestID}}'\n")
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		done := make(chan error, 1)
		go func() {
			f, err := Parse(data)
			if err == nil {
				_, err = f.Tenants[0].RenderComment(CommentData{RequestID: "r-1"})
			}
			done <- err
		}()
		select {
		case err := <-done:
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Errorf("%s: %v", fn, err)
			}
			if got := after.TotalAlloc - before.TotalAlloc; got > 64<<20 {
				t.Errorf("%s nested %d deep: parsing and rendering allocated %d MiB", fn, depth, got>>20)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%s nested %d deep: still parsing after 20s", fn, depth)
		}
	}
}
