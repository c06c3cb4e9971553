package bolt_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/bolt"
)

func ExampleOpen() {
	dir, err := os.MkdirTemp("", "eventstore-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	s, err := bolt.Open(filepath.Join(dir, "events.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	_, err = s.Append(ctx,
		eventstore.Event{AggregateID: "order-1", Type: "OrderPlaced", Payload: []byte(`{"total":42}`)},
		eventstore.Event{AggregateID: "order-1", Type: "OrderPaid", Payload: []byte(`{}`)},
	)
	if err != nil {
		log.Fatal(err)
	}
	for e, err := range s.ReadAggregate(ctx, "order-1", 0) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(e.Version, e.Position, e.Type, string(e.Payload))
	}
	// Output:
	// 1 1 OrderPlaced {"total":42}
	// 2 2 OrderPaid {}
}

// Project keeps a read model, the total of each order, in the store's
// file: each batch of events and the checkpoint advance in one
// transaction, so a crash never loses or repeats an event's effect.
func ExampleStore_Project() {
	dir, err := os.MkdirTemp("", "eventstore-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	s, err := bolt.Open(filepath.Join(dir, "events.db"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	for _, e := range []eventstore.Event{
		{AggregateID: "order-1", Type: "ItemAdded", Payload: []byte(`{"price":30}`)},
		{AggregateID: "order-1", Type: "ItemAdded", Payload: []byte(`{"price":12}`)},
		{AggregateID: "order-2", Type: "ItemAdded", Payload: []byte(`{"price":5}`)},
		{AggregateID: "order-2", Type: "OrderShipped", Payload: []byte(`{}`)},
	} {
		if _, err := s.Append(ctx, e); err != nil {
			log.Fatal(err)
		}
	}
	head, err := s.Head(ctx)
	if err != nil {
		log.Fatal(err)
	}

	// Project runs until ctx ends; this example stops it once it is
	// caught up, when the checkpoint reaches the head.
	ctx2, stop := context.WithCancel(ctx)
	go func() {
		for {
			if p, err := s.LoadCheckpoint(ctx, "order-totals"); err != nil || p >= head {
				stop()
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	totals := []byte("rm:order-totals")
	err = s.Project(ctx2, "order-totals", eventstore.Filter{Types: []string{"ItemAdded"}},
		func(tx *bolt.ProjectTx, e eventstore.Event) error {
			var item struct{ Price uint64 }
			if err := json.Unmarshal(e.Payload, &item); err != nil {
				return err
			}
			b, err := tx.CreateBucketIfNotExists(totals)
			if err != nil {
				return err
			}
			var total uint64
			if v := b.Get([]byte(e.AggregateID)); v != nil {
				total = binary.BigEndian.Uint64(v)
			}
			return b.Put([]byte(e.AggregateID), binary.BigEndian.AppendUint64(nil, total+item.Price))
		})
	if !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}

	err = s.ViewReadModel(ctx, func(tx *bolt.ReadModelTx) error {
		return tx.Bucket(totals).ForEach(func(k, v []byte) error {
			fmt.Println(string(k), binary.BigEndian.Uint64(v))
			return nil
		})
	})
	if err != nil {
		log.Fatal(err)
	}
	p, _ := s.LoadCheckpoint(ctx, "order-totals")
	fmt.Println("checkpoint", p)
	// Output:
	// order-1 42
	// order-2 5
	// checkpoint 4
}

// Compact writes a compacted copy of a store's file, in the current
// format, while a read-only Store holds the file's lock; the copy is
// checked before it replaces anything.
func ExampleCompact() {
	dir, err := os.MkdirTemp("", "eventstore-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	src, dst := filepath.Join(dir, "events.db"), filepath.Join(dir, "compact.db")

	s, err := bolt.Open(src, nil)
	if err != nil {
		log.Fatal(err)
	}
	for i := range 100 {
		e := eventstore.Event{AggregateID: fmt.Sprintf("order-%d", i%10), Type: "OrderPlaced", Payload: []byte(`{}`),
			Metadata: map[string]string{"correlation_id": "0190a7e2-3c4d-7e8f-9a0b-1c2d3e4f5a6b"}}
		if _, err := s.Append(ctx, e); err != nil {
			log.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		log.Fatal(err)
	}

	// A read-only Store vets the file (a log left by a crash must be
	// replayed first) and holds its lock while bbolt reads it.
	ro, err := bolt.Open(src, &bolt.Options{ReadOnly: true})
	if err != nil {
		log.Fatal(err)
	}
	from, err := bbolt.Open(src, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		log.Fatal(err)
	}
	to, err := bbolt.Open(dst, 0o600, &bbolt.Options{PageSize: from.Info().PageSize})
	if err != nil {
		log.Fatal(err)
	}
	err = bolt.Compact(ctx, to, from, 64<<20)
	for _, db := range []*bbolt.DB{to, from} {
		if cerr := db.Close(); err == nil {
			err = cerr
		}
	}
	if cerr := ro.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		log.Fatal(err)
	}

	c, err := bolt.Open(dst, &bolt.Options{ReadOnly: true})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if err := c.Check(ctx); err != nil {
		log.Fatal(err)
	}
	events, err := eventstore.Collect(c.ReadAll(ctx, 0))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(events), "events, last", events[99].AggregateID, events[99].Version, events[99].Metadata["correlation_id"])
	// Output:
	// 100 events, last order-9 10 0190a7e2-3c4d-7e8f-9a0b-1c2d3e4f5a6b
}
