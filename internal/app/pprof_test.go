package app

import (
	"context"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// TestProfilingEndpoints: /debug/pprof/ is served only with Profiling on;
// its goroutine dump holds no secret; a CPU profile under way does not
// hold up a stop.
func TestProfilingEndpoints(t *testing.T) {
	t.Parallel()
	get := func(e *env, path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + e.app.HTTPAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	off := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}})
	if code, _ := get(off, "/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("without profiling /debug/pprof/ answered %d, want 404", code)
	}

	on := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}, noStart: true})
	on.opts.Profiling = true
	on.start()
	if code, _ := get(on, "/debug/pprof/"); code != http.StatusOK {
		t.Errorf("with profiling /debug/pprof/ answered %d, want 200", code)
	}
	code, dump := get(on, "/debug/pprof/goroutine?debug=2")
	if code != http.StatusOK || !strings.Contains(dump, "goroutine") {
		t.Errorf("goroutine dump: %d, %d bytes", code, len(dump))
	}
	if strings.Contains(dump, on.tenants["contoso"].secret) {
		t.Error("the goroutine dump holds the client secret")
	}

	profiling := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + on.app.HTTPAddr() + "/debug/pprof/profile?seconds=60")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
		profiling <- err
	}()
	time.Sleep(200 * time.Millisecond) // the profile is under way
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := on.app.Stop(ctx); err != nil {
		t.Errorf("stop with a CPU profile under way: %v", err)
	}
	<-profiling
}

// TestProfilingCommandLineHidesTheNATSPassword: /debug/pprof/cmdline shows
// the command line without the user and password of --nats-url, in each
// way the flag can be written. Not parallel: it sets os.Args.
func TestProfilingCommandLineHidesTheNATSPassword(t *testing.T) {
	saved := os.Args
	t.Cleanup(func() { os.Args = saved })
	os.Args = []string{"worker",
		"--nats-url", "nats://alice:PW1secret@nats.example:4222",
		"-nats-url=nats://bob:PW2secret@nats.example:4222,nats://bob:PW3secret@nats2.example:4222",
		"--nats-url=carol:PW4secret@nats.example:4222",
		"-nats-url", "TOKEN5secret@nats.example",
		"--config", "/etc/mde/worker.yaml", "--pprof"}

	e := setup(t, envConfig{machines: 1, tenants: []string{"contoso"}, noStart: true})
	e.opts.Profiling = true
	e.start()
	resp, err := http.Get("http://" + e.app.HTTPAddr() + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	got := string(b)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/debug/pprof/cmdline answered %d", resp.StatusCode)
	}
	for _, s := range []string{"secret", "alice", "bob", "carol"} {
		if strings.Contains(got, s) {
			t.Errorf("the command line shown holds %q", s)
		}
	}
	for _, s := range []string{"nats://nats.example:4222", "nats://nats2.example:4222", "nats.example", "/etc/mde/worker.yaml", "--pprof"} {
		if !strings.Contains(got, s) {
			t.Errorf("the command line shown lacks %q: %q", s, got)
		}
	}
}
