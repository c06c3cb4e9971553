package bench

import (
	"fmt"
	"iter"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventstore-go/eventstore"
)

// shape is the shape of a replay fixture: smallAggs aggregates of smallLen
// events, and one aggregate of bigLen events.
//
// A realistic fixture (legacy false) is written as an application's
// commands write: calls of 1 to 3 events (gen), each call with its own
// metadata; activeAggs small aggregates are open at a time, their calls
// interleaved at random with each other and with the big aggregate's (a
// tenth of the calls, with fullShape), so that an aggregate's events are
// spread over a stretch of the log as they are in a real one.
//
// The legacy fixture is the old one, kept for a labelled row: calls of
// loadBatch events that share one metadata map (legacyEvent), which lets
// bolt share one decoded map across a call's events.
type shape struct {
	smallAggs, smallLen, bigLen int
	legacy                      bool
}

// fullShape is the default fixture: 9,000 aggregates of 100 events and one
// of 100,000, a million events.
var fullShape = shape{smallAggs: 9000, smallLen: 100, bigLen: 100_000}

// legacyShape is the old fixture's big aggregate alone: 100,000 events in
// calls of 100 sharing metadata. Its row is Replay/aggregate=100k-legacy.
var legacyShape = shape{bigLen: 100_000, legacy: true}

func (s shape) events() int { return s.smallAggs*s.smallLen + s.bigLen }

// activeAggs is how many small aggregates a realistic fixture writes to at
// a time.
const activeAggs = 64

// fixtureSeed seeds the gen of every realistic fixture: every backend holds
// the same events.
const fixtureSeed = 42

// loadBatch is how many events a legacy fixture appends per call.
const loadBatch = 100

// bigAggregate is the ID of the fixture's large aggregate.
const bigAggregate = "account-big"

func smallAggregate(i int) string { return fmt.Sprintf("account-%05d", i) }

// fixtureBase is the timestamp of the fixture's first event; the events of
// a call share a timestamp, the first event's number in milliseconds after
// fixtureBase.
var fixtureBase = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// replayType is the type ReadType reads: a tenth of the events.
var replayType = eventTypes[1]

// fixtureInfo is what the reads of a fixture must find.
type fixtureInfo struct {
	Total  int
	OfType int       // events of replayType
	InTime int       // events in [Start, End)
	Start  time.Time // ReadTime window
	End    time.Time
	Size   int64 // bytes on disk, 0 if unknown
}

// fixture is a loaded replay store and what each read must find.
type fixture struct {
	fixtureInfo
	h     *handle
	shape shape
}

var (
	fixturesMu sync.Mutex
	fixtures   = map[string]*fixture{}
)

// calls yields the calls of the fixture of shape sh, in order, and counts
// into info what the reads must find. Every call yields a new slice.
func calls(sh shape, info *fixtureInfo) iter.Seq[[]eventstore.Event] {
	*info = fixtureInfo{Total: sh.events()}
	info.Start = fixtureBase.Add(time.Duration(info.Total*45/100) * time.Millisecond)
	info.End = fixtureBase.Add(time.Duration(info.Total*55/100) * time.Millisecond)
	count := func(events []eventstore.Event) {
		for _, e := range events {
			if e.Type == replayType {
				info.OfType++
			}
			if !e.Timestamp.Before(info.Start) && e.Timestamp.Before(info.End) {
				info.InTime++
			}
		}
	}
	if sh.legacy {
		return func(yield func([]eventstore.Event) bool) {
			seq := 0
			for call := range sh.bigLen / loadBatch {
				batch := make([]eventstore.Event, loadBatch)
				for j := range batch {
					seq++
					batch[j] = legacyEvent(bigAggregate, uint64(call*loadBatch+j+1), seq, call)
					batch[j].Timestamp = fixtureBase.Add(time.Duration(seq) * time.Millisecond)
				}
				count(batch)
				if !yield(batch) {
					return
				}
			}
		}
	}
	return func(yield func([]eventstore.Event) bool) {
		g := newGen(fixtureSeed)
		versions := make(map[string]uint64)
		var active []int
		nextSmall := 0
		for g.seq < sh.events() {
			for len(active) < activeAggs && nextSmall < sh.smallAggs {
				active = append(active, nextSmall)
				nextSmall++
			}
			bigLeft := uint64(sh.bigLen) - versions[bigAggregate]
			agg, slot, left := bigAggregate, -1, bigLeft
			// The big aggregate gets its share of the calls.
			if len(active) > 0 && (bigLeft == 0 || g.r.IntN(sh.events()) >= sh.bigLen) {
				slot = g.r.IntN(len(active))
				agg = smallAggregate(active[slot])
				left = uint64(sh.smallLen) - versions[agg]
			}
			n := min(g.callSize(), int(left))
			ts := fixtureBase.Add(time.Duration(g.seq+1) * time.Millisecond)
			events := g.next(agg, versions[agg], n, ts)
			versions[agg] += uint64(n)
			if slot >= 0 && versions[agg] == uint64(sh.smallLen) {
				active = append(active[:slot], active[slot+1:]...)
			}
			count(events)
			if !yield(events) {
				return
			}
		}
	}
}

// appendCalls is the loader of most backends: one Append per call, in
// order.
func appendCalls(_ testing.TB, h *handle, calls iter.Seq[[]eventstore.Event]) error {
	for events := range calls {
		if _, err := h.Append(background, events...); err != nil {
			return err
		}
	}
	return nil
}

// fixtureFor returns the backend's replay fixture of shape sh, building it
// the first time in the process, or copying it from the fixture cache (see
// cache_test.go).
func fixtureFor(b testing.TB, be backend, sh shape) *fixture {
	fixturesMu.Lock()
	defer fixturesMu.Unlock()
	name := fixtureName(be, sh)
	if f, ok := fixtures[name]; ok {
		return f
	}
	t0 := time.Now()
	f := &fixture{shape: sh}
	how := "loaded"
	if h, info, ok := cachedFixture(b, be, sh); ok {
		f.h, f.fixtureInfo, how = h, info, "taken from the cache"
	} else {
		h := be.open(b, false, true)
		load := be.load
		if load == nil {
			load = appendCalls
		}
		if err := load(b, h, calls(sh, &f.fixtureInfo)); err != nil {
			b.Fatalf("loading the %s fixture: %v", be.name, err)
		}
		f.h = storeFixture(b, be, sh, h, &f.fixtureInfo)
	}
	kind := "realistic"
	if sh.legacy {
		kind = "legacy"
	}
	b.Logf("%s fixture: %d %s events %s in %v", be.name, f.Total, kind, how, time.Since(t0).Round(time.Millisecond))
	fixtures[name] = f
	if !be.onHeap {
		atExit(f.release)
	}
	return f
}

// fixtureName names the fixture of shape sh on be in fixtures.
func fixtureName(be backend, sh shape) string { return fmt.Sprintf("%s %+v", be.name, sh) }

// release closes the fixture's store and removes what it left.
func (f *fixture) release() {
	f.h.Close()
	if f.h.cleanup != nil {
		f.h.cleanup()
	}
}

// dropFixtures releases the backend's fixtures and forgets them.
func dropFixtures(be backend) {
	fixturesMu.Lock()
	var drop []*fixture
	for name, f := range fixtures {
		if strings.HasPrefix(name, be.name+" ") {
			drop = append(drop, f)
			delete(fixtures, name)
		}
	}
	fixturesMu.Unlock()
	for _, f := range drop {
		f.release()
	}
	runtime.GC()
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
			dropFixtures(be)
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

// A replayWorkload is one read of a fixture of shape (fullShape when
// zero): read(f, i) is the i-th, which yields want(f) events. latency
// says the benchmark reports the percentiles of each read's time.
type replayWorkload struct {
	name    string
	shape   shape
	latency bool
	want    func(f *fixture) int
	read    func(f *fixture, i int) iterSeq
}

var replayWorkloads = []replayWorkload{
	{name: "aggregate=100", latency: true, want: func(f *fixture) int { return f.shape.smallLen }, read: func(f *fixture, i int) iterSeq {
		// Spread over the aggregates, by a stride prime to their number.
		return f.h.ReadAggregate(background, smallAggregate((i*7919)%f.shape.smallAggs), 0)
	}},
	{name: "aggregate=100k", want: func(f *fixture) int { return f.shape.bigLen }, read: readBig},
	{name: "aggregate=100k-legacy", shape: legacyShape, want: func(f *fixture) int { return f.shape.bigLen }, read: readBig},
	{name: "all", want: func(f *fixture) int { return f.Total }, read: func(f *fixture, _ int) iterSeq {
		return f.h.ReadAll(background, 0)
	}},
	{name: "type", want: func(f *fixture) int { return f.OfType }, read: func(f *fixture, _ int) iterSeq {
		return f.h.ReadType(background, replayType, 0)
	}},
	{name: "time", want: func(f *fixture) int { return f.InTime }, read: func(f *fixture, _ int) iterSeq {
		return f.h.ReadTime(background, "", f.Start, f.End)
	}},
}

func readBig(f *fixture, _ int) iterSeq { return f.h.ReadAggregate(background, bigAggregate, 0) }

func benchReplay(b *testing.B, be backend, w replayWorkload) {
	sh := w.shape
	if sh == (shape{}) {
		sh = fullShape
	}
	f := fixtureFor(b, be, sh)
	want := w.want(f)
	// One read, untimed, warms the cache.
	countEvents(b, w.read(f, 0), want)
	var lat *latencies
	if w.latency {
		lat = newLatencies(b.N)
	}
	m := startMeter(b)
	for i := 0; i < b.N; i++ {
		t0 := lat.start()
		countEvents(b, w.read(f, i), want)
		lat.stop(t0)
	}
	m.stop(b.N * want)
	lat.report(b)
	reportDisk(b, f.Size, f.Total)
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
