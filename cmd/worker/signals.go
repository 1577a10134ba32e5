package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"go.uber.org/zap"
)

// signals turns the signals that stop the worker into two contexts. stop
// ends at the first: the worker stops, letting requests under way finish
// for up to --shutdown-timeout. hurry ends at the second: that wait is
// over at once, as if --shutdown-timeout had been reached, and the stop
// goes on the same way (the requests cancelled go back to the stream).
// Later signals are caught too, so none kills the worker in the middle of
// its stop.
type signals struct {
	stop, hurry context.Context
	release     func() // stops catching the signals; run's last step
}

// catchSignals starts catching the stop signals. The stop context's
// cause names the first one.
func catchSignals(log *zap.Logger) signals {
	// Room for a few: the second must not be lost while the first is
	// being handled.
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, stopSignals()...)
	stop, first := context.WithCancelCause(context.Background())
	hurry, second := context.WithCancel(context.Background())
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for n := 1; ; n++ {
			select {
			case <-done:
				return
			case s := <-ch:
				onSignal(n, s, first, second, log)
			}
		}
	})
	return signals{stop: stop, hurry: hurry, release: func() {
		signal.Stop(ch)
		close(done)
		wg.Wait()
		first(nil)
		second()
	}}
}

// stopSignals are the signals that stop the worker: SIGTERM, SIGINT, and
// SIGHUP (the terminal or SSH session it runs in closed) unless it was
// started with SIGHUP ignored, as nohup does. Asking for SIGHUP would
// undo that.
func stopSignals() []os.Signal {
	sigs := []os.Signal{os.Interrupt, syscall.SIGTERM}
	if !signal.Ignored(syscall.SIGHUP) {
		sigs = append(sigs, syscall.SIGHUP)
	}
	return sigs
}

// onSignal handles the nth stop signal, s.
func onSignal(n int, s os.Signal, first context.CancelCauseFunc, second context.CancelFunc, log *zap.Logger) {
	switch n {
	case 1:
		first(errors.New(s.String() + " signal received"))
	case 2:
		log.Warn("second signal: cancelling requests under way", zap.Stringer("signal", s))
		second()
	default:
		log.Info("signal during the stop: requests under way already cancelled", zap.Stringer("signal", s))
	}
}
