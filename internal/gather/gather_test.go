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
	g := Gatherer{expect: 8, last: 10 * time.Millisecond}
	waited, took := wait(&g, 1, 0)
	if !waited {
		t.Fatal("did not wait for the writers just answered")
	}
	// The stall is 10ms/16 and the limit 5ms; the bound leaves room for a
	// busy machine.
	if took > 500*time.Millisecond {
		t.Errorf("waited %v for writers that never came", took)
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

// A queue that keeps growing, but never to what is expected, still ends the
// wait at its limit.
func TestWait_LimitHoldsWhileWritersTrickleIn(t *testing.T) {
	var g Gatherer
	g.Done(4*time.Millisecond, 1000, 0) // expect 1000; a limit of 2ms
	var mu sync.Mutex
	queued := 1
	mu.Lock()
	defer mu.Unlock()
	start := time.Now()
	last := start
	waited := g.Wait(&mu, func() int {
		// One more every 100µs: always within the stall of 250µs, and
		// 1000 only after 100ms.
		if now := time.Now(); now.Sub(last) >= 100*time.Microsecond {
			queued, last = queued+1, now
		}
		return queued
	}, 1024)
	if !waited {
		t.Fatal("did not wait")
	}
	if queued >= 1000 {
		t.Errorf("waited for %d appends in %v: the limit is 2ms", queued, time.Since(start))
	}
}
