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

// TestCommentTemplateWideOrRepeatedCallsAreBounded: a call whose own
// output is cut can still build far more before the cut: printf pads
// each of its verbs to the width asked (up to a million), and print,
// printf and the escapers join every argument they are given. A few
// kilobytes of template asking for a wide field many times, or one long
// text many times, built hundreds of megabytes for every comment. Each
// call now stops building where its output would be cut. What a call
// builds within the cut is as before.
func TestCommentTemplateWideOrRepeatedCallsAreBounded(t *testing.T) {
	long := `$x := printf "%60000d" 1}}{{`
	for name, tmpl := range map[string]string{
		"printf wide":     `printf "` + strings.Repeat("%999999[1]d", 300) + `" 1`,
		"printf repeated": long + `printf "%s"` + strings.Repeat(" $x", 1000),
		"print":           long + `print` + strings.Repeat(" $x", 1000),
		"println":         long + `println` + strings.Repeat(" $x", 1000),
		"js":              long + `js` + strings.Repeat(" $x", 1000),
		"html":            long + `html` + strings.Repeat(" $x", 1000),
		"urlquery":        long + `urlquery` + strings.Repeat(" $x", 1000),
	} {
		data := []byte("tenants:" + okTenant + "    comment: '{{" + tmpl + "}} {{.RequestID}}'\n")
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		f, err := Parse(data)
		if err == nil {
			_, err = f.Tenants[0].RenderComment(CommentData{RequestID: "r-1"})
		}
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if got := after.TotalAlloc - before.TotalAlloc; got > 32<<20 {
			t.Errorf("%s: parsing and rendering a %d-byte template allocated %d MiB", name, len(tmpl), got>>20)
		}
	}
	for tmpl, want := range map[string]string{
		`{{print "a" "b" 1 2 "c"}}`: "ab1 2c",
		`{{println "a" 1}}x`:        "a 1 x",
		`{{printf "%05d|%-4s|%.2f|%q|%x" 7 "ab" 3.14159 "é" 255}}`: `00007|ab |3.14|"é"|ff`,
		`{{printf "%[2]s-%[1]s" "a" "b"}}`:                         "b-a",
		`{{js "<a>" 1}}`:                                           `\u003Ca\u003E1`,
		`{{html "<a>" "b"}}`:                                       "&lt;a&gt;b",
		`{{urlquery "a b" 1 2}}`:                                   "a+b1+2",
	} {
		data := []byte("tenants:" + okTenant + "    comment: '" + tmpl + " {{.RequestID}}'\n")
		f, err := Parse(data)
		if err != nil {
			t.Fatalf("%s: %v", tmpl, err)
		}
		got, err := f.Tenants[0].RenderComment(CommentData{RequestID: "r-1"})
		if err != nil || got != want+" r-1" {
			t.Errorf("%s: %q, %v; want %q", tmpl, got, err, want+" r-1")
		}
	}
}
