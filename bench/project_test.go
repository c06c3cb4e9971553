package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/bolt"
	"github.com/eventstore-go/eventstore/postgres"
)

// projectShape is the log the projection benchmarks read: 100,000 events
// of the realistic kind.
var projectShape = shape{smallAggs: 900, smallLen: 100, bigLen: 10_000}

// BenchmarkProject measures exactly-once projections, the read model
// written in the store's own transaction with its checkpoint: each
// iteration projects the whole log under a new name, from position 0 until
// the checkpoint reaches the head, with a handler that writes one record
// per event (a bolt bucket key; a PostgreSQL row). Each batch is durable.
func BenchmarkProject(b *testing.B) {
	for _, be := range backends {
		switch be.name {
		case "bolt", "postgres":
			b.Run(be.name+"/exactly-once", func(b *testing.B) { benchProject(b, be) })
		}
	}
}

func benchProject(b *testing.B, be backend) {
	h := be.open(b, false, true)
	defer func() {
		h.Close()
		if h.cleanup != nil {
			h.cleanup()
		}
	}()
	load := be.load
	if load == nil {
		load = appendCalls
	}
	var info fixtureInfo
	if err := load(b, h, calls(projectShape, &info)); err != nil {
		b.Fatal(err)
	}
	var project func(ctx context.Context, name string) error
	var checkpoints eventstore.CheckpointStore
	switch s := h.target.(type) {
	case *bolt.Store:
		// The fixture loaded without fsync; project on a durable store.
		path := s.Path()
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		d, err := bolt.Open(path, nil)
		if err != nil {
			b.Fatal(err)
		}
		h.target = d
		checkpoints = d
		project = func(ctx context.Context, name string) error {
			bucket := []byte("rm:" + name)
			return d.Project(ctx, name, eventstore.Filter{}, func(tx *bolt.ProjectTx, e eventstore.Event) error {
				bk, err := tx.CreateBucketIfNotExists(bucket)
				if err != nil {
					return err
				}
				return bk.Put(binary.BigEndian.AppendUint64(nil, e.Position), []byte(e.Type))
			})
		}
	case *postgres.Store:
		checkpoints = s
		table := pgx.Identifier{h.schema, "read_model"}.Sanitize()
		rows, conn, err := pgExec(background, `CREATE TABLE `+table+` (name text, position bigint, type text, PRIMARY KEY (name, position))`)
		if err != nil {
			b.Fatal(err)
		}
		rows.Close()
		conn.Close(background)
		project = func(ctx context.Context, name string) error {
			return s.Project(ctx, name, eventstore.Filter{}, func(ctx context.Context, tx pgx.Tx, e eventstore.Event) error {
				_, err := tx.Exec(ctx, `INSERT INTO `+table+` VALUES ($1, $2, $3)`, name, e.Position, e.Type)
				return err
			})
		}
	default:
		b.Skipf("%s has no exactly-once Project", be.name)
	}
	head := uint64(info.Total)
	run := func(name string) {
		ctx, cancel := context.WithCancel(background)
		done := make(chan error, 1)
		go func() { done <- project(ctx, name) }()
		defer func() {
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				b.Fatal(err)
			}
		}()
		for {
			cp, err := checkpoints.LoadCheckpoint(background, name)
			if err != nil {
				b.Fatal(err)
			}
			if cp >= head {
				return
			}
			select {
			case err := <-done:
				b.Fatalf("Project returned before the head: %v", err)
			case <-time.After(2 * time.Millisecond):
			}
		}
	}
	run("warmup")
	m := startMeter(b)
	for i := 0; i < b.N; i++ {
		run(fmt.Sprintf("p%d", i))
	}
	m.stop(b.N * info.Total)
}
