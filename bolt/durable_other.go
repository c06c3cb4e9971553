//go:build !linux

package bolt

import "os"

// prepareFile does nothing outside Linux: Open neither syncs the directory
// of a new file nor re-reads an existing one from the disk (see the Linux
// version).
func prepareFile(*os.File, string) error { return nil }

// fdatasync flushes f to the disk (fsync: Go has no portable fdatasync).
func fdatasync(f *os.File) error { return f.Sync() }
