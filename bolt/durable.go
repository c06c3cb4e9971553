//go:build linux

package bolt

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// prepareFile readies f, the file Open locked at path name, before bbolt
// (or vetFile) reads a byte of it:
//
//   - for a new file (size 0: just created, or left empty by a crash before
//     its first page was written), it fsyncs the directory that holds it,
//     so that the file's name survives a power loss once its first commit
//     does (POSIX asks for both);
//   - for an existing file, it fdatasyncs it and then asks the kernel to
//     drop the cached pages of bbolt's two meta pages (POSIX_FADV_DONTNEED),
//     so that bbolt reads them from the disk: after a failed writeback,
//     Linux may keep the pages that never reached the disk in its cache,
//     marked clean, and a store reopened to retry an append would then find
//     the events of the failed commit and report them as stored.
//
// Dropping the meta pages is enough: bbolt never writes a page that a
// committed meta page reaches (it copies on write), and it writes a meta
// page only after the pages it reaches were synced. So every page the meta
// on disk reaches was synced by the commit that made it reachable, and
// its cached copy is what the disk holds; the pages of a failed commit are
// unreachable from it. Dropping the whole file's cache instead made the
// first full read after Open of a 48 MB file ten times slower.
//
// Open calls it with the file locked, so that no other process writes the
// file between the sync and bbolt's reads.
func prepareFile(f *os.File, name string) error {
	info, err := f.Stat()
	if err != nil {
		return err
	}
	if info.Size() == 0 {
		if err := syncDir(filepath.Dir(name)); err != nil {
			return fmt.Errorf("sync the directory of the new file: %w", err)
		}
		return nil
	}
	return dropCache(f)
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

// fdatasync flushes f's data (and the metadata needed to read it, such as
// its size) to the disk.
func fdatasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }
