//go:build !unix

package app

import "os"

// lockFile takes no lock where flock is missing: the container image and
// the supported hosts are Unix.
func lockFile(*os.File) error { return nil }
