// Package gather decides how long bolt's group commit waits for concurrent
// writers before it commits.
//
// Writers that append again as soon as they are answered split into two
// cohorts when a commit takes only the appends already queued: each cohort
// queues while the other's commit runs, so every commit, with its fixed
// cost (two fsyncs), carries half of them. A Gatherer remembers
// how many appends the last commit took and saw arrive, and makes the next
// commit wait for that many, while they keep arriving, for a bounded time.
package gather

import (
	"runtime"
	"sync"
	"time"
)

// Gatherer holds what one group commit learned from its last commit. Its
// methods are called with the lock that guards the commit queue held,
// by the goroutine that runs commits; the zero value never waits until a
// commit is done.
type Gatherer struct {
	// MaxWait caps each wait, which is also at most half the duration of
	// the last commit. Zero means no cap beyond that; less than zero turns
	// waiting off.
	MaxWait time.Duration

	expect int           // appends the last commit took and saw arrive
	last   time.Duration // how long the last commit took
	end    time.Time     // when it ended
}

// Done records a commit that took took and answered answered appends,
// while queued more queued behind it. Call it before answering them.
func (g *Gatherer) Done(took time.Duration, answered, queued int) {
	g.last, g.end, g.expect = took, time.Now(), answered+queued
}

// Wait waits, before a commit takes its appends from the queue, until
// queued() reports as many as the last commit took and saw arrive (at most
// most), while the count keeps growing: it stops when it has not grown for
// a sixteenth of the last commit's duration (20µs to 1ms), after half the
// last commit's duration or MaxWait, and does not start once that long
// has passed since the last commit ended, as writers the last commit
// answered come back at once or not at all. A lone writer thus never
// waits, except once right after a burst, for at most one stall. mu is the
// queue's lock, held on entry and on return and released while waiting.
// Wait reports whether it waited.
//
// It polls, yielding the processor to the writers it waits for, rather
// than sleeping on a timer: Go timers shorter than a millisecond may fire
// a millisecond late, longer than the waits it needs.
func (g *Gatherer) Wait(mu *sync.Mutex, queued func() int, most int) bool {
	want := min(g.expect, most)
	if queued() >= want || g.MaxWait < 0 || g.last <= 0 {
		return false
	}
	limit := g.last / 2
	if g.MaxWait > 0 {
		limit = min(limit, g.MaxWait)
	}
	now := time.Now()
	if now.Sub(g.end) >= limit {
		return false
	}
	stall := min(max(g.last/16, 20*time.Microsecond), time.Millisecond)
	deadline, quiet := now.Add(limit), now.Add(stall)
	for n := queued(); n < want; n = queued() {
		mu.Unlock()
		runtime.Gosched()
		now = time.Now()
		mu.Lock()
		if now.After(deadline) {
			break
		}
		if queued() > n {
			quiet = now.Add(stall)
		} else if now.After(quiet) {
			break
		}
	}
	return true
}
