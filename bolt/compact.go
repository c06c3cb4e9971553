package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	bbolt "go.etcd.io/bbolt"

	"github.com/eventstore-go/eventstore"
)

// Compact copies the store file src into dst, an empty bbolt file, the
// way bbolt.Compact does (every bucket, nested ones included, with full
// leaves and no free pages, in write transactions of about txMaxSize
// bytes of keys and values; zero or less means one transaction), and
// writes the copy in the format this package writes: event records of an
// older format are rewritten in the current one (format 3 stores metadata
// values that are UUIDs in 16 bytes), a format 1 file gets its tags
// bucket, and the format key is format 3, without the mark of a write-ahead
// log. So compacting is also how to shrink a file of an older format.
//
// src is read in one read transaction and left as it is. It must be a
// store file whose log, if any, was replayed (Open the file once without
// ReadOnly): a file whose log holds commits fails, as with a read-only
// Open, with an error matching ErrNeedsRecovery. A file of another format
// fails with one matching eventstore.ErrUnknownFormat, a record that does
// not parse with one matching eventstore.ErrCorrupt; ctx is checked
// between transactions. Hold the file's lock while Compact reads it, for
// instance by keeping a read-only Store of it open, and open src with
// bbolt's ReadOnly option. dst is neither synced nor closed; check the
// copy (Open read-only, then Check) before it replaces src.
func Compact(ctx context.Context, dst, src *bbolt.DB, txMaxSize int64) error {
	return src.View(func(stx *bbolt.Tx) error {
		meta := stx.Bucket(bucketMeta)
		if meta == nil {
			return fmt.Errorf("bolt: compact: %w: no meta bucket", eventstore.ErrUnknownFormat)
		}
		format := meta.Get(keyFormat)
		if err := checkFormat(format); err != nil {
			return fmt.Errorf("bolt: compact: %w", err)
		}
		// The file may lack commits that a log beside it holds: the test
		// of a read-only Open.
		if _, _, err := readLog(src.Path(), true); err != nil {
			return fmt.Errorf("bolt: compact: %w", err)
		}
		c := &compactor{ctx: ctx, dst: dst, max: txMaxSize}
		defer c.rollback()
		err := stx.ForEach(func(name []byte, b *bbolt.Bucket) error {
			return c.bucket([][]byte{name}, b)
		})
		if err != nil {
			return err
		}
		if err := c.begin(); err != nil {
			return err
		}
		if bytes.Equal(format, formatV1) {
			if _, err := c.tx.CreateBucketIfNotExists(bucketTags); err != nil {
				return err
			}
		}
		if err := c.tx.Bucket(bucketMeta).Put(keyFormat, formatV3); err != nil {
			return err
		}
		return c.commit()
	})
}

// compactor copies buckets into a file, a transaction at a time.
type compactor struct {
	ctx  context.Context
	dst  *bbolt.DB
	max  int64
	tx   *bbolt.Tx
	size int64 // bytes put in tx
	d    decoder
}

// begin opens a write transaction unless one is open.
func (c *compactor) begin() error {
	if c.tx != nil {
		return nil
	}
	if err := c.ctx.Err(); err != nil {
		return err
	}
	tx, err := c.dst.Begin(true)
	if err != nil {
		return err
	}
	c.tx, c.size = tx, 0
	return nil
}

// commit commits the open transaction.
func (c *compactor) commit() error {
	err := c.tx.Commit()
	c.tx = nil
	return err
}

// reopen returns the bucket at path, with the sequence seq, in the open
// transaction, or in a new one if none is open.
func (c *compactor) reopen(path [][]byte, seq uint64) (*bbolt.Bucket, error) {
	if err := c.begin(); err != nil {
		return nil, err
	}
	return c.target(path, seq)
}

func (c *compactor) rollback() {
	if c.tx != nil {
		_ = c.tx.Rollback()
		c.tx = nil
	}
}

// target returns the bucket at path in the open transaction, creating it.
func (c *compactor) target(path [][]byte, seq uint64) (*bbolt.Bucket, error) {
	b, err := c.tx.CreateBucketIfNotExists(path[0])
	if err != nil {
		return nil, err
	}
	b.FillPercent = 1.0 // keys arrive in order
	for _, name := range path[1:] {
		if b, err = b.CreateBucketIfNotExists(name); err != nil {
			return nil, err
		}
		b.FillPercent = 1.0
	}
	if err := b.SetSequence(seq); err != nil {
		return nil, err
	}
	return b, nil
}

// bucket copies the source bucket b at path, and the buckets nested in it.
func (c *compactor) bucket(path [][]byte, b *bbolt.Bucket) error {
	events := len(path) == 1 && bytes.Equal(path[0], bucketEvents)
	to, err := c.reopen(path, b.Sequence())
	if err != nil {
		return err
	}
	cur := b.Cursor()
	for k, v := cur.First(); k != nil; k, v = cur.Next() {
		if v == nil {
			if err := c.bucket(append(slices.Clip(path), k), b.Bucket(k)); err != nil {
				return err
			}
			// The nested copy may have committed: find the bucket again.
			if to, err = c.reopen(path, b.Sequence()); err != nil {
				return err
			}
			continue
		}
		if events {
			if v, err = c.upgradeRecord(k, v); err != nil {
				return err
			}
		}
		if c.max > 0 && c.size+int64(len(k)+len(v)) > c.max && c.size > 0 {
			if err := c.commit(); err != nil {
				return err
			}
			if to, err = c.reopen(path, b.Sequence()); err != nil {
				return err
			}
		}
		if err := to.Put(k, v); err != nil {
			return err
		}
		c.size += int64(len(k) + len(v))
	}
	return nil
}

// upgradeRecord returns the event record v, stored under k, as this
// version writes it: v itself when it is so already, which is the case
// unless a metadata value is a UUID stored as text.
func (c *compactor) upgradeRecord(k, v []byte) ([]byte, error) {
	r, err := parseEventRecord(v)
	if err != nil {
		return nil, corrupt("event", k, err)
	}
	if !isEventKey(k, r.aggregateID, r.version) {
		return nil, corrupt("event", k, errors.New("key does not match record"))
	}
	if !textUUIDs(&r) {
		return v, nil
	}
	var e eventstore.Event
	if err := c.d.fill(k, &r, &e, -1); err != nil {
		return nil, err
	}
	// A new slice each time: bbolt keeps a value until its transaction
	// ends.
	return appendEventRecord(make([]byte, 0, eventRecordSize(&e)), &e, r.id), nil
}

// textUUIDs reports whether a metadata value of the parsed record r is a
// UUID stored as text, which format 3 stores in 16 bytes.
func textUUIDs(r *rawEvent) bool {
	b := r.meta
	for range r.metaLen {
		var val []byte
		var isUUID bool
		_, b, _ = readBytes(b)
		val, isUUID, b, _ = readMetaValue(b)
		if _, ok := canonicalUUID(val); ok && !isUUID {
			return true
		}
	}
	return false
}
