package bench

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/eventstore-go/eventstore"
)

// shape is the shape of a replay fixture: smallAggs aggregates of smallLen
// events, and one aggregate of bigLen events.
type shape struct {
	smallAggs, smallLen, bigLen int
}

// fullShape is the default fixture: 9,000 aggregates of 100 events and one
// of 100,000, a million events.
var fullShape = shape{smallAggs: 9000, smallLen: 100, bigLen: 100_000}

func (s shape) events() int { return s.smallAggs*s.smallLen + s.bigLen }

// loadBatch is how many events the fixture loader appends per call.
const loadBatch = 100

// bigAggregate is the ID of the fixture's large aggregate.
const bigAggregate = "account-big"

func smallAggregate(i int) string { return fmt.Sprintf("account-%05d", i) }

// fixtureBase is the timestamp of the fixture's first event; each later
// event is a millisecond later.
var fixtureBase = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// replayType is the type ReadType reads: a tenth of the events.
var replayType = eventTypes[1]

// fixture is a loaded replay store and what each read must find.
type fixture struct {
	h      *handle
	shape  shape
	total  int
	ofType int       // events of replayType
	inTime int       // events in [timeStart, timeEnd)
	start  time.Time // ReadTime window
	end    time.Time
	size   int64 // bytes on disk, 0 if unknown
}

var (
	fixturesMu sync.Mutex
	fixtures   = map[string]*fixture{}
)

// fixtureFor returns the backend's replay fixture, building it the first
// time. Its events are appended loadBatch at a time, the batches of the big
// aggregate interleaved with those of the small ones (one in ten, with
// fullShape), with timestamps a millisecond apart; positions follow the
// order of the calls.
func fixtureFor(b *testing.B, be backend) *fixture {
	fixturesMu.Lock()
	defer fixturesMu.Unlock()
	if f, ok := fixtures[be.name]; ok {
		return f
	}
	sh := be.shape
	if sh == (shape{}) {
		sh = fullShape
	}
	t0 := time.Now()
	h := be.open(b, false, true)
	f := &fixture{shape: sh, total: sh.events()}
	f.start = fixtureBase.Add(time.Duration(f.total*45/100) * time.Millisecond)
	f.end = fixtureBase.Add(time.Duration(f.total*55/100) * time.Millisecond)

	// The calls, in order: -1 is a batch of the big aggregate.
	smallCalls := sh.smallAggs * (sh.smallLen / loadBatch)
	bigCalls := sh.bigLen / loadBatch
	calls := make([]int, 0, smallCalls+bigCalls)
	for i, small := 0, 0; len(calls) < cap(calls); i++ {
		// Spread the big aggregate's calls evenly among the others.
		if small >= smallCalls || (bigCalls > 0 && i*bigCalls/(smallCalls+bigCalls) != (i+1)*bigCalls/(smallCalls+bigCalls)) {
			calls = append(calls, -1)
		} else {
			calls = append(calls, small)
			small++
		}
	}
	versions := make(map[string]uint64)
	batch := make([]eventstore.Event, loadBatch)
	seq := 0
	for call, c := range calls {
		agg := bigAggregate
		if c >= 0 {
			agg = smallAggregate(c % sh.smallAggs)
		}
		v := versions[agg]
		for j := range batch {
			seq++
			e := event(agg, v+1+uint64(j), seq, call)
			e.Timestamp = fixtureBase.Add(time.Duration(seq) * time.Millisecond)
			if e.Type == replayType {
				f.ofType++
			}
			if !e.Timestamp.Before(f.start) && e.Timestamp.Before(f.end) {
				f.inTime++
			}
			batch[j] = e
		}
		if _, err := h.Append(background, batch...); err != nil {
			b.Fatalf("loading the %s fixture: %v", be.name, err)
		}
		versions[agg] = v + loadBatch
	}
	if seq != f.total {
		b.Fatalf("fixture: loaded %d events, want %d", seq, f.total)
	}
	if be.reopen != nil {
		h = be.reopen(b, h)
		f.size = h.closedSize
	} else if h.size != nil {
		n, err := h.size() // a server's size, read while open
		if err != nil {
			b.Fatal(err)
		}
		f.size = n
	}
	f.h = h
	b.Logf("%s fixture: %d events loaded in %v", be.name, f.total, time.Since(t0).Round(time.Millisecond))
	fixtures[be.name] = f
	if !be.onHeap {
		atExit(f.release)
	}
	return f
}

// release closes the fixture's store and removes what it left.
func (f *fixture) release() {
	f.h.Close()
	if f.h.cleanup != nil {
		f.h.cleanup()
	}
}

// dropFixture releases the backend's fixture and forgets it.
func dropFixture(name string) {
	fixturesMu.Lock()
	f := fixtures[name]
	delete(fixtures, name)
	fixturesMu.Unlock()
	if f != nil {
		f.release()
		runtime.GC()
	}
}

// BenchmarkReplay measures reads of a store holding a million events
// (fewer on PostgreSQL: see pgShape), warm in memory or in the page cache.
// Every event read is decoded into an eventstore.Event; every read checks
// that it found as many events as the fixture holds.
//
// Backends that keep their data on the heap run first, one after the
// other, each dropping its fixture when done; then the others run
// workload by workload, so that the figures compared in a ratio are
// measured close together in time.
func BenchmarkReplay(b *testing.B) {
	for _, be := range backends {
		if be.replay && be.onHeap {
			for _, w := range replayWorkloads {
				b.Run(be.name+"/"+w.name, func(b *testing.B) { benchReplay(b, be, w) })
			}
			dropFixture(be.name)
		}
	}
	for _, w := range replayWorkloads {
		for _, be := range backends {
			if be.replay && !be.onHeap {
				b.Run(be.name+"/"+w.name, func(b *testing.B) { benchReplay(b, be, w) })
			}
		}
	}
}

// A replayWorkload is one read of a fixture: read(f, i) is the i-th, which
// yields want(f) events.
type replayWorkload struct {
	name string
	want func(f *fixture) int
	read func(f *fixture, i int) iterSeq
}

var replayWorkloads = []replayWorkload{
	{"aggregate=100", func(f *fixture) int { return f.shape.smallLen }, func(f *fixture, i int) iterSeq {
		// Spread over the aggregates, by a stride prime to their number.
		return f.h.ReadAggregate(background, smallAggregate((i*7919)%f.shape.smallAggs), 0)
	}},
	{"aggregate=100k", func(f *fixture) int { return f.shape.bigLen }, func(f *fixture, _ int) iterSeq {
		return f.h.ReadAggregate(background, bigAggregate, 0)
	}},
	{"all", func(f *fixture) int { return f.total }, func(f *fixture, _ int) iterSeq {
		return f.h.ReadAll(background, 0)
	}},
	{"type", func(f *fixture) int { return f.ofType }, func(f *fixture, _ int) iterSeq {
		return f.h.ReadType(background, replayType, 0)
	}},
	{"time", func(f *fixture) int { return f.inTime }, func(f *fixture, _ int) iterSeq {
		return f.h.ReadTime(background, "", f.start, f.end)
	}},
}

func benchReplay(b *testing.B, be backend, w replayWorkload) {
	f := fixtureFor(b, be)
	want := w.want(f)
	// One read, untimed, warms the cache.
	countEvents(b, w.read(f, 0), want)
	m := startMeter(b)
	for i := 0; i < b.N; i++ {
		countEvents(b, w.read(f, i), want)
	}
	m.stop(b.N * want)
	reportDisk(b, f.size, f.total)
}

type iterSeq = func(yield func(eventstore.Event, error) bool)

// countEvents reads seq to the end and fails unless it holds want events.
func countEvents(b *testing.B, seq iterSeq, want int) {
	n := 0
	for e, err := range seq {
		if err != nil {
			b.Fatal(err)
		}
		n++
		sink += len(e.Payload)
	}
	if n != want {
		b.Fatalf("read %d events, want %d", n, want)
	}
}
