package bolt

import (
	"errors"
	"fmt"
	"os"

	"github.com/eventstore-go/eventstore"
)

// ErrReadOnly reports a write to a Store opened with Options.ReadOnly.
var ErrReadOnly = errors.New("bolt: store opened read-only")

// errReadOnly is the error of every write to a read-only store.
func (s *Store) errReadOnly() error {
	return fmt.Errorf("bolt: %s: %w: writes need a store opened without Options.ReadOnly", s.path, ErrReadOnly)
}

// vetReadOnly refuses, for a read-only Open, an empty file: a new store
// cannot be made without writing.
func vetReadOnly(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() == 0 {
		return fmt.Errorf("%w: an empty file, opened read-only (a writable Open makes it a new store)", eventstore.ErrUnknownFormat)
	}
	return nil
}
