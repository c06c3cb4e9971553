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
	"golang.org/x/sys/unix"
)

// openFile returns the bbolt Options.OpenFile hook that Open uses. It opens
// the file, takes bbolt's lock on it (bbolt's own flock on the same open
// file then succeeds at once), and before bbolt reads a byte of it:
//
//   - for a new file (size 0: just created, or left empty by a crash before
//     its first page was written), fsyncs the directory that holds it, so
//     that the file's name survives a power loss once its first commit
//     does (POSIX asks for both);
//   - for an existing file, fdatasyncs it and then asks the kernel to drop
//     the cached pages of bbolt's two meta pages (POSIX_FADV_DONTNEED), so
//     that bbolt reads them from the disk: after a failed writeback, Linux
//     may keep the pages that never reached the disk in its cache, marked
//     clean, and a store reopened to retry an append would then find the
//     events of the failed commit and report them as stored.
//
// Dropping the meta pages is enough: bbolt never writes a page that a
// committed meta page reaches (it copies on write), and it writes a meta
// page only after the pages it reaches were synced. So every page the meta
// on disk reaches was synced by the commit that made it reachable, and
// its cached copy is what the disk holds; the pages of a failed commit are
// unreachable from it. Dropping the whole file's cache instead made the
// first full read after Open of a 48 MB file ten times slower.
//
// The lock is taken here, before the sync, so that no other process
// writes the file between the sync and bbolt's reads. timeout is
// Options.Timeout; running out of it returns bbolt's ErrTimeout, as
// bbolt's own lock does.
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
		if err := dropCache(f); err != nil {
			return nil, err
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

// metaRegion is how many bytes at the start of a file hold bbolt's two
// meta pages, whatever the page size it was created with (the OS's: at
// most 64 KiB on Linux).
const metaRegion = 2 * 64 << 10

// dropCache writes out what is still dirty of f (from an earlier handle,
// in this process or a dead one), then drops the cached pages of its meta
// pages, so that bbolt reads them from the disk.
func dropCache(f *os.File) error {
	fd := int(f.Fd())
	if err := unix.Fdatasync(fd); err != nil {
		return fmt.Errorf("fdatasync before reading: %w", err)
	}
	if err := unix.Fadvise(fd, 0, metaRegion, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("drop the cached pages before reading: %w", err)
	}
	return nil
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
