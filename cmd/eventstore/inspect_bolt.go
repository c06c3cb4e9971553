package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"runtime/debug"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/index"
)

// The bolt file's buckets (see the bolt package doc).
var (
	bucketEvents      = []byte("events")
	bucketPositions   = []byte("positions")
	bucketTypes       = []byte("types")
	bucketTimestamps  = []byte("timestamps")
	bucketSnapshots   = []byte("snapshots")
	bucketCheckpoints = []byte("checkpoints")
	bucketMeta        = []byte("meta")
)

// boltView runs fn in a read transaction of a second, read-only bbolt
// handle on the store's file, for walks over keys that the store's API
// does not offer (counts without decoding records). The store, open
// read-only, has vetted the file and holds its shared lock; this handle
// shares it. A panic or fault inside bbolt (a damaged file) becomes an
// error matching eventstore.ErrCorrupt.
func (s *store) boltView(ctx context.Context, timeout time.Duration, fn func(tx *bbolt.Tx) error) (err error) {
	return s.boltViewDB(timeout, func(db *bbolt.DB) error {
		return db.View(func(tx *bbolt.Tx) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			return fn(tx)
		})
	})
}

// boltViewDB is boltView with the whole read-only bbolt handle.
func (s *store) boltViewDB(timeout time.Duration, fn func(db *bbolt.DB) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: %w: bbolt failed reading it (%v); run 'eventstore verify %s'", s.name, eventstore.ErrCorrupt, r, s.name)
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	db, err := bbolt.Open(s.name, 0, &bbolt.Options{ReadOnly: true, Timeout: max(timeout, time.Second)})
	if err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	defer db.Close()
	return fn(db)
}

func needBucket(tx *bbolt.Tx, name []byte) (*bbolt.Bucket, error) {
	b := tx.Bucket(name)
	if b == nil {
		return nil, fmt.Errorf("%w: bucket %q missing", eventstore.ErrCorrupt, name)
	}
	return b, nil
}

// boltStats gathers stats from keys alone: no record is decoded.
func (s *store) boltStats(ctx context.Context, timeout time.Duration, st *stats) error {
	return s.boltView(ctx, timeout, func(tx *bbolt.Tx) error {
		bs := map[string]*bbolt.Bucket{}
		for _, name := range [][]byte{bucketEvents, bucketPositions, bucketTypes, bucketTimestamps, bucketSnapshots, bucketMeta} {
			b, err := needBucket(tx, name)
			if err != nil {
				return err
			}
			bs[string(name)] = b
		}
		st.Format = string(bs["meta"].Get([]byte("format")))
		if k, _ := bs["positions"].Cursor().Last(); k != nil {
			p, err := index.ParsePosition(k)
			if err != nil {
				return fmt.Errorf("%w: last position key %x", eventstore.ErrCorrupt, k)
			}
			st.Head = p
		}
		// Aggregates: one seek per aggregate, past its last version.
		c := bs["events"].Cursor()
		var n uint64
		for k, _ := c.First(); k != nil; {
			if n%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			agg, _, err := index.ParseEvent(k)
			if err != nil {
				return fmt.Errorf("%w: events key %x: %w", eventstore.ErrCorrupt, k, err)
			}
			n++
			next, _ := c.Seek(index.Event(string(agg), math.MaxUint64))
			if next != nil && bytes.Equal(next, index.Event(string(agg), math.MaxUint64)) {
				next, _ = c.Next()
			}
			k = next
		}
		st.Aggregates = n
		// Types: count the keys of each (keys only).
		tc := bs["types"].Cursor()
		var events uint64
		for k, _ := tc.First(); k != nil; k, _ = tc.Next() {
			if events%4096 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			typ, _, err := index.ParseType(k)
			if err != nil {
				return fmt.Errorf("%w: types key %x: %w", eventstore.ErrCorrupt, k, err)
			}
			events++
			if l := len(st.Types); l > 0 && st.Types[l-1].Type == string(typ) {
				st.Types[l-1].Events++
			} else {
				st.Types = append(st.Types, typeCount{Type: string(typ), Events: 1})
			}
		}
		st.Events = events
		tsc := bs["timestamps"].Cursor()
		if k, _ := tsc.First(); k != nil {
			t, _, err := index.ParseTime(k)
			if err != nil {
				return fmt.Errorf("%w: timestamps key %x: %w", eventstore.ErrCorrupt, k, err)
			}
			st.First = t
		}
		if k, _ := tsc.Last(); k != nil {
			t, _, err := index.ParseTime(k)
			if err != nil {
				return fmt.Errorf("%w: timestamps key %x: %w", eventstore.ErrCorrupt, k, err)
			}
			st.Last = t
		}
		st.Snapshots = uint64(bs["snapshots"].Stats().KeyN)
		if b := tx.Bucket(bucketCheckpoints); b != nil {
			st.Checkpoints = uint64(b.Stats().KeyN)
		}
		return nil
	})
}

// boltAggregates lists the aggregates whose ID starts with prefix, with
// their versions, from the events keys (one seek per aggregate).
func (s *store) boltAggregates(ctx context.Context, timeout time.Duration, prefix string) ([]aggregateInfo, error) {
	var out []aggregateInfo
	err := s.boltView(ctx, timeout, func(tx *bbolt.Tx) error {
		b, err := needBucket(tx, bucketEvents)
		if err != nil {
			return err
		}
		c := b.Cursor()
		for k, _ := c.First(); k != nil; {
			if len(out)%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			agg, _, err := index.ParseEvent(k)
			if err != nil {
				return fmt.Errorf("%w: events key %x: %w", eventstore.ErrCorrupt, k, err)
			}
			end := index.Event(string(agg), math.MaxUint64)
			next, _ := c.Seek(end)
			var last []byte
			if next != nil && bytes.Equal(next, end) {
				last = next
				next, _ = c.Next()
			} else {
				if next == nil {
					last, _ = c.Last()
				} else {
					last, _ = c.Prev()
					c.Next()
				}
			}
			if bytes.HasPrefix(agg, []byte(prefix)) {
				_, v, err := index.ParseEvent(last)
				if err != nil {
					return fmt.Errorf("%w: events key %x: %w", eventstore.ErrCorrupt, last, err)
				}
				out = append(out, aggregateInfo{ID: string(agg), Version: v})
			}
			k = next
		}
		return nil
	})
	return out, err
}
