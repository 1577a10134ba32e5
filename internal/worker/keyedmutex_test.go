package worker

import (
	"context"
	"testing"
)

func TestKeyedMutex(t *testing.T) {
	t.Parallel()
	var k keyedMutex
	unlock, ok := k.tryLock("a")
	if !ok {
		t.Fatal("a free lock was not taken")
	}
	if _, ok := k.tryLock("a"); ok {
		t.Fatal("a held lock was taken twice")
	}
	if u, ok := k.tryLock("b"); !ok {
		t.Fatal("another key is blocked")
	} else {
		u()
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := k.lock(ctx, "a"); err == nil {
		t.Fatal("lock of a held key returned with a cancelled context")
	}
	got := make(chan struct{})
	go func() {
		u, err := k.lock(t.Context(), "a")
		if err == nil {
			u()
		}
		close(got)
	}()
	unlock()
	<-got
	if len(k.locks) != 0 {
		t.Fatalf("%d entries left after every lock was released", len(k.locks))
	}
}
