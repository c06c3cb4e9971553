package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// atomicFile is an output file written under a temporary name in the same
// directory and renamed over its target only once complete and synced, so
// that an interrupted command leaves no partial file under the target's
// name.
type atomicFile struct {
	*os.File
	target    string
	committed bool
}

func createAtomic(target string) (*atomicFile, error) {
	dir, base := filepath.Split(target)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, err
	}
	return &atomicFile{File: f, target: target}, nil
}

// commit syncs the file, renames it over the target and syncs the
// directory.
func (a *atomicFile) commit() error {
	if err := a.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", a.Name(), err)
	}
	if err := a.Close(); err != nil {
		return err
	}
	if err := os.Rename(a.Name(), a.target); err != nil {
		_ = os.Remove(a.Name())
		return err
	}
	a.committed = true
	d, err := os.Open(filepath.Dir(a.target))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// abort removes the temporary file, unless commit renamed it. Call it
// deferred.
func (a *atomicFile) abort() {
	if !a.committed {
		_ = a.Close()
		_ = os.Remove(a.Name())
	}
}
