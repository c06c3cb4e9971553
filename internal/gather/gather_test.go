package gather

import (
	"sync"
	"testing"
	"time"
)

// wait runs g.Wait on a queue of queued appends, none of which arrive,
// after a commit of 10ms that ended sinceLast ago, and reports whether it
// waited and for how long.
func wait(g *Gatherer, queued int, sinceLast time.Duration) (bool, time.Duration) {
	var mu sync.Mutex
	mu.Lock()
	defer mu.Unlock()
	g.end = time.Now().Add(-sinceLast)
	start := time.Now()
	waited := g.Wait(&mu, func() int { return queued }, 1024)
	return waited, time.Since(start)
}

func TestWait_WhenNotToWait(t *testing.T) {
	var zero Gatherer
	if waited, _ := wait(&zero, 1, 0); waited {
		t.Error("waited before any commit")
	}
	lone := Gatherer{expect: 1, last: 10 * time.Millisecond}
	if waited, _ := wait(&lone, 1, 0); waited {
		t.Error("a lone writer waited")
	}
	stale := Gatherer{expect: 8, last: 10 * time.Millisecond}
	if waited, _ := wait(&stale, 1, time.Second); waited {
		t.Error("waited for writers answered a second ago")
	}
	off := Gatherer{MaxWait: -1, expect: 8, last: 10 * time.Millisecond}
	if waited, _ := wait(&off, 1, 0); waited {
		t.Error("waited with MaxWait < 0")
	}
	full := Gatherer{expect: 8, last: 10 * time.Millisecond}
	if waited, _ := wait(&full, 8, 0); waited {
		t.Error("waited with the queue already full")
	}
}

func TestWait_BoundedWhenNobodyComes(t *testing.T) {
	// A stall of 1ms, a limit of 2s: nobody comes, so the stall ends the
	// wait long before the limit would.
	g := Gatherer{expect: 8, last: 4 * time.Second}
	waited, took := wait(&g, 1, 0)
	if !waited {
		t.Fatal("did not wait for the writers just answered")
	}
	if took > 500*time.Millisecond {
		t.Errorf("waited %v for writers that never came: the stall is 1ms", took)
	}
}

// Arrivals keep the wait going past a stall, and it ends once the queue
// holds what is expected; it ends short of that only after a stall with
// no arrival (a goroutine held off the processor for 1ms on a busy
// machine).
func TestWait_UntilTheWritersArrive(t *testing.T) {
	var g Gatherer
	g.Done(time.Hour, 3, 1) // expect 4; a stall of 1ms, a limit of 30 minutes
	var mu sync.Mutex
	queued := 1
	mu.Lock()
	defer mu.Unlock()
	go func() {
		// Each arrival takes the lock while Wait releases it.
		for range 3 {
			mu.Lock()
			queued++
			mu.Unlock()
			time.Sleep(100 * time.Microsecond)
		}
	}()
	start := time.Now()
	if !g.Wait(&mu, func() int { return queued }, 1024) {
		t.Fatal("did not wait")
	}
	if took := time.Since(start); queued != 4 && took < time.Millisecond {
		t.Errorf("stopped after %v with %d queued, want 4 or a stall of 1ms", took, queued)
	}
}

// Writers that keep arriving, each within the stall, but never as many as
// expected, still end the wait at its limit.
func TestWait_LimitHoldsWhileWritersTrickleIn(t *testing.T) {
	var g Gatherer
	g.Done(16*time.Millisecond, 4000, 0) // expect 4000; a stall of 1ms, a limit of 8ms
	var mu sync.Mutex
	mu.Lock()
	defer mu.Unlock()
	start := time.Now()
	// One more writer every 100µs, by the clock: however late Wait looks,
	// it sees the queue grow, so only the limit can end the wait before
	// the 4000th arrives, at 400ms.
	queued := func() int { return 1 + int(time.Since(start)/(100*time.Microsecond)) }
	if !g.Wait(&mu, queued, 4096) {
		t.Fatal("did not wait")
	}
	if took := time.Since(start); took > 200*time.Millisecond {
		t.Errorf("waited %v with %d queued: the limit is 8ms", took, queued())
	}
}
