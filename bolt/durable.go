//go:build linux

package bolt

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	berrors "go.etcd.io/bbolt/errors"
)

// openFile returns the bbolt Options.OpenFile hook that Open uses. It opens
// the file, takes bbolt's lock on it (bbolt's own flock on the same open
// file then succeeds at once), and before bbolt reads a byte of it, when
// the file is new (size 0: just created, or left empty by a crash before
// its first page was written), fsyncs the directory that holds it, so that
// the file's name survives a power loss once its first commit does (POSIX
// asks for both). timeout is Options.Timeout; running out of it returns
// bbolt's ErrTimeout, as bbolt's own lock does.
func openFile(timeout time.Duration) func(name string, flag int, perm os.FileMode) (*os.File, error) {
	return func(name string, flag int, perm os.FileMode) (_ *os.File, err error) {
		f, err := os.OpenFile(name, flag, perm)
		if err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				f.Close()
			}
		}()
		if err := lockFile(f, timeout); err != nil {
			return nil, err
		}
		info, err := f.Stat()
		if err != nil {
			return nil, err
		}
		if info.Size() == 0 {
			if err := syncDir(filepath.Dir(name)); err != nil {
				return nil, fmt.Errorf("sync the directory of the new file: %w", err)
			}
			return f, nil
		}
		return f, nil
	}
}

// lockFile takes an exclusive flock on f, as bbolt does (same retry
// interval), within timeout.
func lockFile(f *os.File, timeout time.Duration) error {
	const retry = 50 * time.Millisecond
	start := time.Now()
	fd := int(f.Fd())
	for {
		err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return err
		}
		if time.Since(start) > timeout-retry {
			return berrors.ErrTimeout
		}
		time.Sleep(retry)
	}
}

// syncDir fsyncs the directory dir, so that the names created in it
// survive a power loss.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
