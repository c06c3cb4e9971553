package bolt

import (
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventstore-go/eventstore"
)

// A checkpoint that something else moves between the read of a batch and
// its transaction is noticed there: the batch is dropped and Project goes
// on from the new checkpoint, so the events it had read before the move
// are not handled.
func TestProject_CheckpointMovedUnderIt(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "events.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 10 {
		if _, err := s.Append(ctx, eventstore.Event{AggregateID: fmt.Sprintf("a-%d", i), Type: "T", Payload: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	moves := 0
	s.proj.afterRead = func() {
		if moves == 0 {
			moves++
			if err := s.SaveCheckpoint(ctx, "p", 6); err != nil {
				t.Error(err)
			}
		}
	}
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var handled []uint64
	done := make(chan error, 1)
	go func() {
		done <- s.Project(pctx, "p", eventstore.Filter{}, func(tx *ProjectTx, e eventstore.Event) error {
			handled = append(handled, e.Position)
			b, err := tx.CreateBucketIfNotExists([]byte("rm:p"))
			if err != nil {
				return err
			}
			return b.Put(binary.BigEndian.AppendUint64(nil, e.Position), nil)
		})
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		cp, err := s.LoadCheckpoint(ctx, "p")
		if err != nil {
			t.Fatal(err)
		}
		if cp == 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("checkpoint %d never reached 10", cp)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("Project returned %v", err)
	}
	if fmt.Sprint(handled) != "[7 8 9 10]" {
		t.Fatalf("handled %v, want [7 8 9 10]: the batch read before the move must be dropped", handled)
	}
}

// An idle Project waits for the next commit: it does not read again until
// one comes.
func TestProject_IdleWaitsForCommit(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "events.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var rounds atomic.Int64
	s.proj.onRound = func() { rounds.Add(1) }
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	handled := make(chan uint64, 10)
	done := make(chan error, 1)
	go func() {
		done <- s.Project(pctx, "p", eventstore.Filter{}, func(tx *ProjectTx, e eventstore.Event) error {
			handled <- e.Position
			return nil
		})
	}()
	for i := range 3 {
		if _, err := s.Append(ctx, eventstore.Event{AggregateID: "a", Type: "T", Payload: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
		select {
		case p := <-handled:
			if p != uint64(i+1) {
				t.Fatalf("handled position %d, want %d", p, i+1)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("an appended event was never projected")
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for cp := uint64(0); cp != 3; time.Sleep(time.Millisecond) {
		if cp, err = s.LoadCheckpoint(ctx, "p"); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("checkpoint %d never reached 3", cp)
		}
	}
	// After the last batch's commit, one round finds nothing and waits (it
	// may not have run yet on a busy machine: allow it).
	before := rounds.Load()
	time.Sleep(300 * time.Millisecond)
	if n := rounds.Load() - before; n > 1 {
		t.Fatalf("%d rounds while idle: Project polls", n)
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("Project returned %v", err)
	}
}
