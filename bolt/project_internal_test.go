package bolt

import (
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
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
