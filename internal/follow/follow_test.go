package follow

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventstore-go/eventstore"
)

// An idle subscription reads once, then sleeps until a publish: it does
// not poll. And a publish that lands while it reads is not missed.
func TestSeq_ReadsOnlyWhenWoken(t *testing.T) {
	sig := NewSignal(0)
	var reads atomic.Int64
	publishDuringRead := make(chan uint64, 1)
	read := func(after, head uint64, yield func(eventstore.Event, error) bool) (uint64, bool) {
		reads.Add(1)
		select {
		case h := <-publishDuringRead:
			sig.Publish(h) // a commit between the read and the wait
		default:
		}
		for p := after + 1; p <= head; p++ {
			if !yield(eventstore.Event{Position: p}, nil) {
				return 0, false
			}
		}
		return head, true
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan uint64, 16)
	done := make(chan error, 1)
	go func() {
		var err error
		for e, e2 := range Seq(ctx, sig, 0, read) {
			if e2 != nil {
				err = e2
				break
			}
			got <- e.Position
		}
		done <- err
	}()

	time.Sleep(100 * time.Millisecond)
	if n := reads.Load(); n != 1 {
		t.Fatalf("%d reads while idle, want 1", n)
	}
	publishDuringRead <- 2
	sig.Publish(1)
	for want := uint64(1); want <= 2; want++ {
		select {
		case p := <-got:
			if p != want {
				t.Fatalf("got position %d, want %d", p, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("position %d, published during a read, never came", want)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if n := reads.Load(); n != 3 {
		t.Fatalf("%d reads after two wakes, want 3", n)
	}
	sig.Publish(2) // not greater: wakes nobody
	time.Sleep(50 * time.Millisecond)
	if n := reads.Load(); n != 3 {
		t.Fatalf("a publish of an old head woke the subscription")
	}
	sig.Close()
	select {
	case err := <-done:
		if !errors.Is(err, eventstore.ErrClosed) {
			t.Fatalf("ended with %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end the subscription")
	}
}
