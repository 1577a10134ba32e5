package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// dataDirLock is the file in --data-dir that the worker running the
// embedded server there holds locked.
const dataDirLock = "worker.lock"

// errDataDirTaken is a data dir whose lock another process holds.
var errDataDirTaken = errors.New("taken")

// takeDataDir makes the embedded server's storage, and locks it for this
// process until Stop has shut the server down. NATS does not lock its
// store: two workers on one --data-dir (each with its embedded server on
// a free port, or on two addresses) would run two servers writing the
// same streams' files.
func (a *App) takeDataDir() error {
	dir := a.opts.DataDir
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("data dir %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, dataDirLock), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("data dir %s: %w", dir, err)
	}
	if err := lockFile(f); err != nil {
		_ = f.Close()
		if errors.Is(err, errDataDirTaken) {
			return fmt.Errorf("data dir %s: another worker's embedded NATS server uses it; give each worker a --data-dir of its own", dir)
		}
		return fmt.Errorf("data dir %s: lock: %w", dir, err)
	}
	// Registered before the server's cleanup, so released after it.
	a.life.add("data dir lock", func(context.Context) error { return f.Close() })
	return nil
}
