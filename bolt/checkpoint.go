package bolt

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/storekit"
	bbolt "go.etcd.io/bbolt"
)

var _ eventstore.CheckpointStore = (*Store)(nil)

// bucketCheckpoints holds the checkpoints: name -> position u64. Files
// written before it existed gain it at Open (see addBuckets).
var bucketCheckpoints = []byte("checkpoints")

// readModelPrefix starts the name of every bucket that holds a read model
// (written by Project in the transaction that advances its checkpoint);
// it is exported as ReadModelPrefix. The store's own buckets are the fixed
// list in the package doc, none of which starts with it; Open leaves other
// buckets alone, and Check vets only their pages (walkFile, tx.Check).
const readModelPrefix = "rm:"

// addBuckets creates the buckets that a file of format "eventstore/bolt 1"
// may lack because they came later (checkpoints). Old readers ignore them.
// It writes only when one is missing.
func addBuckets(db *bbolt.DB) error {
	missing := false
	err := db.View(func(tx *bbolt.Tx) error {
		missing = tx.Bucket(bucketCheckpoints) == nil
		return nil
	})
	if err != nil || !missing {
		return err
	}
	return db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketCheckpoints)
		return err
	})
}

// LoadCheckpoint implements eventstore.CheckpointStore. A stored value that
// is not 8 bytes fails with an error matching eventstore.ErrCorrupt.
func (s *Store) LoadCheckpoint(ctx context.Context, name string) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := storekit.CheckCheckpointName(name); err != nil {
		return 0, err
	}
	var p uint64
	err := s.view(func(tx *bbolt.Tx) error {
		b, err := bucket(tx, bucketCheckpoints)
		if err != nil {
			return err
		}
		v, err := lookup(b, []byte(name), "checkpoint")
		if err != nil || v == nil {
			return err
		}
		if len(v) != 8 {
			return corrupt("checkpoint", []byte(name), errors.New("value is not 8 bytes"))
		}
		p = binary.BigEndian.Uint64(v)
		return nil
	})
	return p, err
}

// SaveCheckpoint implements eventstore.CheckpointStore. It writes in its
// own transaction, durably like Append (fsynced unless
// Options.UnsafeNoSync).
func (s *Store) SaveCheckpoint(ctx context.Context, name string, position uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := storekit.CheckCheckpointName(name); err != nil {
		return err
	}
	val := binary.BigEndian.AppendUint64(nil, position)
	return s.update(ctx, func(tx *bbolt.Tx) error {
		b, err := bucket(tx, bucketCheckpoints)
		if err != nil {
			return err
		}
		if err := b.Put([]byte(name), val); err != nil {
			return fmt.Errorf("bolt: save checkpoint %q: %w", name, err)
		}
		return nil
	})
}
