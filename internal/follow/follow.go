// Package follow is the live half of Subscribe that every backend shares:
// a commit signal (Signal) and the loop that catches up from the store,
// then waits for the next commit and reads again (Seq).
//
// There is no queue per subscriber. A subscriber re-reads the store from
// the last position it has looked at, so a slow one costs writers nothing
// and can never miss or repeat an event; an idle one is its caller's
// goroutine blocked on a channel.
package follow

import (
	"context"
	"iter"
	"sync"

	"github.com/eventstore-go/eventstore"
)

// Signal tells subscribers that the log grew. A writer publishes the new
// head after each commit; a subscriber takes a channel from Watch before it
// reads, so that a commit between its read and its wait is never missed.
// The zero Signal is ready to use, with head 0.
type Signal struct {
	mu     sync.Mutex
	head   uint64
	ch     chan struct{} // closed and replaced by Publish, closed by Close
	closed bool
}

// NewSignal returns a Signal whose head is head.
func NewSignal(head uint64) *Signal { return &Signal{head: head} }

// Publish records head, when it is greater than the head recorded, and
// then wakes every subscriber waiting on a channel from Watch.
func (s *Signal) Publish(head uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || head <= s.head {
		return
	}
	s.head = head
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}

// Close wakes every subscriber for good: Watch reports closed from now on.
func (s *Signal) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}

// Head returns the head last published.
func (s *Signal) Head() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.head
}

// closedCh is the channel Watch returns after Close.
var closedCh = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Watch returns the head last published, a channel that is closed at the
// next Publish of a greater head or at Close, and whether Close was called.
func (s *Signal) Watch() (head uint64, next <-chan struct{}, closed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return s.head, closedCh, true
	}
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.head, s.ch, false
}

// ReadFunc reads, for a subscription, the events matching its filter with
// a position greater than after, in position order, and passes each to
// yield. head is the head published before the read began: every event up
// to it is committed (and durable) and must be read; a backend that can
// see events before they are durable must read none beyond it. It returns
// the position up to which it has looked, which the next read starts
// after: at least head when it read to the end. It returns ok false, and
// the subscription ends, when yield returned false or it yielded an error
// (a ReadFunc yields at most one error and then returns ok false).
type ReadFunc func(after, head uint64, yield func(eventstore.Event, error) bool) (last uint64, ok bool)

// Seq returns the iterator of Subscribe: it reads from after, then waits
// for sig and reads again, until ctx ends (yielding ctx.Err()), sig closes
// (yielding eventstore.ErrClosed), read fails or the caller stops.
func Seq(ctx context.Context, sig *Signal, after uint64, read ReadFunc) iter.Seq2[eventstore.Event, error] {
	return func(yield func(eventstore.Event, error) bool) {
		last := after
		for {
			if err := ctx.Err(); err != nil {
				yield(eventstore.Event{}, err)
				return
			}
			head, next, closed := sig.Watch() // before the read: see Signal
			if closed {
				yield(eventstore.Event{}, eventstore.ErrClosed)
				return
			}
			l, ok := read(last, head, yield)
			if !ok {
				return
			}
			last = max(last, l)
			select {
			case <-ctx.Done():
			case <-next:
			}
		}
	}
}
