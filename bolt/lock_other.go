//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package bolt

import (
	"os"
	"time"
)

// lockFile does nothing here: bbolt locks the file itself, after Open has
// vetted it.
func lockFile(*os.File, time.Duration) error { return nil }

// unlockFile does nothing here: closing the file releases bbolt's lock.
func unlockFile(*os.File) error { return nil }
