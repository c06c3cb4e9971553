package bench

import (
	"encoding/json"
	"iter"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/eventstore-go/eventstore"
)

// TestGen checks that the generator makes what the fixture promises:
// calls of 1 to 3 events, each call's metadata its own, JSON payloads of
// 100 B to 2 KiB with a median near 250 B, and the same events for the
// same seed.
func TestGen(t *testing.T) {
	g := newGen(1)
	var sizes []int
	perCall := map[int]int{}
	seen := map[string]bool{}
	for range 5000 {
		call := g.next("a", 0, g.callSize(), fixtureBase)
		perCall[len(call)]++
		corr := call[0].Metadata["correlation_id"]
		if seen[corr] || call[0].Metadata["causation_id"] == "" || call[0].Metadata["user_id"] == "" {
			t.Fatalf("metadata %v: not a call's own", call[0].Metadata)
		}
		seen[corr] = true
		for _, e := range call {
			if !maps.Equal(e.Metadata, call[0].Metadata) {
				t.Fatal("the events of one call have different metadata")
			}
			if !json.Valid(e.Payload) {
				t.Fatalf("payload %s: not JSON", e.Payload)
			}
			sizes = append(sizes, len(e.Payload))
		}
	}
	if len(perCall) != 3 || perCall[1] < perCall[2] || perCall[2] < perCall[3] {
		t.Errorf("events per call: %v, want 1 to 3, mostly 1", perCall)
	}
	slices.Sort(sizes)
	if lo, hi, med := sizes[0], sizes[len(sizes)-1], sizes[len(sizes)/2]; lo < payloadMin || hi > payloadMax || med < 230 || med > 270 {
		t.Errorf("payload sizes %d to %d, median %d; want %d to %d, median near %d", lo, hi, med, payloadMin, payloadMax, payloadMedian)
	}
	a, b := newGen(5).next("x", 0, 3, fixtureBase), newGen(5).next("x", 0, 3, fixtureBase)
	if !slices.EqualFunc(a, b, sameEvent) {
		t.Error("one seed, two different calls")
	}
}

// TestFixtureCalls checks a realistic fixture's calls: every aggregate
// gets exactly its events at consecutive versions, and the counts the
// reads check are right.
func TestFixtureCalls(t *testing.T) {
	sh := shape{smallAggs: 200, smallLen: 30, bigLen: 1000}
	var info fixtureInfo
	versions := map[string]uint64{}
	total, ofType, inTime := 0, 0, 0
	for events := range calls(sh, &info) {
		if len(events) < 1 || len(events) > 3 {
			t.Fatalf("a call of %d events", len(events))
		}
		for _, e := range events {
			if e.Version != versions[e.AggregateID]+1 {
				t.Fatalf("%s: version %d after %d", e.AggregateID, e.Version, versions[e.AggregateID])
			}
			versions[e.AggregateID] = e.Version
			total++
			if e.Type == replayType {
				ofType++
			}
			if !e.Timestamp.Before(info.Start) && e.Timestamp.Before(info.End) {
				inTime++
			}
		}
	}
	if len(versions) != sh.smallAggs+1 || versions[bigAggregate] != uint64(sh.bigLen) || versions[smallAggregate(7)] != uint64(sh.smallLen) {
		t.Fatalf("%d aggregates, big %d, small %d", len(versions), versions[bigAggregate], versions[smallAggregate(7)])
	}
	if total != sh.events() || info.Total != total || info.OfType != ofType || info.InTime != inTime || inTime == 0 {
		t.Fatalf("info %+v; counted %d events, %d of type, %d in time", info, total, ofType, inTime)
	}
}

// TestFixtureCache checks the fixture cache: a fixture built once is
// copied from the cache the second time, reads the same, and the cached
// file is never modified.
func TestFixtureCache(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("EVENTSTORE_BENCH_CACHE", dir)
	sh := shape{smallAggs: 20, smallLen: 10, bigLen: 50}
	for _, be := range backends {
		if be.file == nil && be.fixtureCache == nil {
			continue
		}
		t.Run(be.name, func(t *testing.T) {
			if be.fixtureCache != nil {
				testServerCache(t, be, sh)
				return
			}
			first := fixtureFor(t, be, sh)
			want, err := eventstore.Collect(first.h.ReadAll(background, 0))
			if err != nil || len(want) != sh.events() {
				t.Fatalf("read %d events, %v", len(want), err)
			}
			forget(be, sh)
			cached, _ := filepath.Glob(filepath.Join(dir, be.name+"-*.db"))
			if len(cached) != 1 {
				t.Fatalf("cached files: %v", cached)
			}
			before, err := os.ReadFile(cached[0])
			if err != nil {
				t.Fatal(err)
			}
			second := fixtureFor(t, be, sh)
			defer forget(be, sh)
			if second.fixtureInfo != first.fixtureInfo {
				t.Errorf("cached info %+v, want %+v", second.fixtureInfo, first.fixtureInfo)
			}
			got, err := eventstore.Collect(second.h.ReadAll(background, 0))
			if err != nil || !slices.EqualFunc(got, want, sameEvent) {
				t.Fatalf("the cached fixture read %d events, %v; want %d", len(got), err, len(want))
			}
			if _, err := second.h.Append(background, event("more", 0, 1, 1)); err != nil {
				t.Fatal(err)
			}
			if after, _ := os.ReadFile(cached[0]); string(after) != string(before) {
				t.Error("the cached file changed")
			}
			if k := fixtureKey(t, be, shape{smallAggs: 20, smallLen: 10, bigLen: 51}); k == fixtureKey(t, be, sh) {
				t.Error("two shapes, one key")
			}
		})
	}
}

// forget releases the fixture of shape sh on be and forgets it.
func forget(be backend, sh shape) {
	name := fixtureName(be, sh)
	fixturesMu.Lock()
	f := fixtures[name]
	delete(fixtures, name)
	fixturesMu.Unlock()
	if f != nil {
		f.release()
	}
}

// testServerCache checks a server's fixture cache (PostgreSQL's schema per
// fixture): the second fixtureFor finds the first's data without loading.
func testServerCache(t *testing.T, be backend, sh shape) {
	if err := pgReachable(); err != nil {
		t.Skipf("no PostgreSQL: %v", err)
	}
	key := fixtureKey(t, be, sh)
	t.Cleanup(func() {
		rows, conn, err := pgExec(background, `DROP SCHEMA IF EXISTS benchfix_`+key+` CASCADE`)
		if err == nil {
			rows.Close()
			conn.Close(background)
		}
	})
	first := fixtureFor(t, be, sh)
	want, err := eventstore.Collect(first.h.ReadAll(background, 0))
	if err != nil || len(want) != sh.events() {
		t.Fatalf("read %d events, %v", len(want), err)
	}
	if first.h.schema != "benchfix_"+key {
		t.Fatalf("the fixture is in schema %q, want benchfix_%s", first.h.schema, key)
	}
	forget(be, sh)
	var loads int
	counting := be
	counting.load = func(tb testing.TB, h *handle, calls iter.Seq[[]eventstore.Event]) error {
		loads++
		return be.load(tb, h, calls)
	}
	second := fixtureFor(t, counting, sh)
	defer forget(be, sh)
	if loads != 0 {
		t.Error("the cached fixture was loaded again")
	}
	got, err := eventstore.Collect(second.h.ReadAll(background, 0))
	if err != nil || !slices.EqualFunc(got, want, sameEvent) || second.fixtureInfo != first.fixtureInfo {
		t.Fatalf("the cached fixture read %d events, %v, info %+v; want %d, %+v", len(got), err, second.fixtureInfo, len(want), first.fixtureInfo)
	}
}
