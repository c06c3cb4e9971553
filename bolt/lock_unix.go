//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package bolt

import (
	"errors"
	"os"
	"syscall"
	"time"
)

// lockFile takes the exclusive flock that bbolt takes on f, waiting at most
// timeout, so that Open can vet the file before bbolt reads it. bbolt's own
// flock on the same open file then succeeds at once.
func lockFile(f *os.File, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			return err
		}
		if time.Now().After(deadline) {
			return errLocked(timeout)
		}
		time.Sleep(50 * time.Millisecond) // as bbolt does
	}
}

// unlockFile releases the flock on f. Closing f alone would not while a
// memory map of it remains.
func unlockFile(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}
