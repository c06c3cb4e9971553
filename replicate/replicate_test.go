package replicate_test

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"maps"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/memory"
	"github.com/eventstore-go/eventstore/replicate"
)

func newMemory(t *testing.T) *memory.Store {
	s := memory.New(nil)
	t.Cleanup(func() { s.Close() })
	return s
}

// fill appends n events to each of aggs, round robin, with metadata on
// every other one and payloads whose bytes a re-encoding would change.
func fill(t testing.TB, s eventstore.Store, aggs []string, n int) {
	t.Helper()
	ctx := context.Background()
	for v := 1; v <= n; v++ {
		for _, a := range aggs {
			e := eventstore.Event{
				AggregateID: a,
				Type:        "Happened",
				Payload:     json.RawMessage(fmt.Sprintf(`{ "agg":%q,  "v" : %d }`, a, v)),
			}
			if v%2 == 0 {
				e.Metadata = map[string]string{"user": "ada", "v": fmt.Sprint(v)}
			}
			if _, err := s.Append(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func readAll(t testing.TB, s eventstore.Store) []eventstore.Event {
	t.Helper()
	out, err := eventstore.Collect(s.ReadAll(context.Background(), 0))
	require.NoError(t, err)
	return out
}

// requireCopied checks that dst holds exactly the events of src that keep
// selects, in the same order, at positions 1, 2, 3, ..., with every field
// but Position kept and extra metadata added.
func requireCopied(t testing.TB, src, dst eventstore.Store, keep func(eventstore.Event) bool, extra map[string]string) {
	t.Helper()
	var want []eventstore.Event
	for _, e := range readAll(t, src) {
		if keep == nil || keep(e) {
			want = append(want, e)
		}
	}
	got := readAll(t, dst)
	require.Len(t, got, len(want))
	ids := make(map[string]bool)
	for i, w := range want {
		g := got[i]
		require.False(t, ids[g.ID], "event ID %s twice in dst", g.ID)
		ids[g.ID] = true
		require.Equal(t, uint64(i+1), g.Position, "dst positions are gapless")
		require.Equal(t, w.ID, g.ID)
		require.Equal(t, w.AggregateID, g.AggregateID)
		require.Equal(t, w.Type, g.Type)
		require.Equal(t, string(w.Payload), string(g.Payload), "payload bytes")
		require.Equal(t, w.Version, g.Version)
		require.True(t, w.Timestamp.Equal(g.Timestamp), "timestamp %v != %v", w.Timestamp, g.Timestamp)
		meta := maps.Clone(extra)
		if meta == nil {
			meta = map[string]string{}
		}
		maps.Copy(meta, w.Metadata)
		if len(meta) == 0 {
			meta = nil
		}
		require.Equal(t, meta, g.Metadata, "metadata of %s", w.ID)
	}
}

func TestCopy(t *testing.T) {
	ctx := context.Background()
	src, dst := newMemory(t), newMemory(t)
	fill(t, src, []string{"order-1", "order-2", "user-1"}, 40) // 120 events
	var progress []replicate.Progress
	opts := &replicate.Options{Checkpoint: "from:src", BatchSize: 25, Progress: func(p replicate.Progress) { progress = append(progress, p) }}
	stats, err := replicate.Copy(ctx, src, dst, opts)
	require.NoError(t, err)
	require.Equal(t, int64(120), stats.Copied)
	require.Zero(t, stats.Skipped)
	require.Equal(t, 5, stats.Batches)
	require.Equal(t, uint64(120), stats.SourceHead)
	require.Equal(t, uint64(120), stats.Checkpoint)
	requireCopied(t, src, dst, nil, nil)
	cp, err := dst.LoadCheckpoint(ctx, "from:src")
	require.NoError(t, err)
	require.Equal(t, uint64(120), cp)

	require.NotEmpty(t, progress)
	lastP := progress[len(progress)-1]
	require.Equal(t, replicate.Progress{Start: 0, Position: 120, Head: 120, Events: 120, Rate: lastP.Rate}, lastP)
	for i := 1; i < len(progress); i++ {
		require.GreaterOrEqual(t, progress[i].Position, progress[i-1].Position)
	}

	// A rerun has nothing to do; new source events are copied next time.
	stats, err = replicate.Copy(ctx, src, dst, opts)
	require.NoError(t, err)
	require.Zero(t, stats.Copied+stats.Skipped)
	fill(t, src, []string{"order-1", "user-2"}, 3)
	stats, err = replicate.Copy(ctx, src, dst, opts)
	require.NoError(t, err)
	require.Equal(t, int64(6), stats.Copied)
	requireCopied(t, src, dst, nil, nil)
}

// TestCopy_CrashBeforeCheckpoint reruns a copy whose batches were imported
// but whose checkpoint was lost: everything is skipped, nothing doubled.
func TestCopy_CrashBeforeCheckpoint(t *testing.T) {
	ctx := context.Background()
	src, dst := newMemory(t), newMemory(t)
	fill(t, src, []string{"a", "b"}, 30)
	opts := &replicate.Options{Checkpoint: "c", BatchSize: 7, Metadata: map[string]string{"origin": "device-17"}}
	_, err := replicate.Copy(ctx, src, dst, opts)
	require.NoError(t, err)
	require.NoError(t, dst.SaveCheckpoint(ctx, "c", 20)) // as if the later checkpoints were lost
	fill(t, src, []string{"b"}, 2)

	stats, err := replicate.Copy(ctx, src, dst, opts)
	require.NoError(t, err)
	require.Equal(t, int64(40), stats.Skipped)
	require.Equal(t, int64(2), stats.Copied)
	requireCopied(t, src, dst, nil, opts.Metadata)
}

func TestCopy_Metadata(t *testing.T) {
	ctx := context.Background()
	src, dst := newMemory(t), newMemory(t)
	_, err := src.Append(ctx, eventstore.Event{AggregateID: "a", Type: "T", Payload: json.RawMessage(`{}`), Metadata: map[string]string{"origin": "device-3", "k": "v"}})
	require.NoError(t, err)
	fill(t, src, []string{"b"}, 2)
	extra := map[string]string{"origin": "device-17", "via": "sync"}
	_, err = replicate.Copy(ctx, src, dst, &replicate.Options{Checkpoint: "c", Metadata: extra})
	require.NoError(t, err)
	got := readAll(t, dst)
	require.Equal(t, map[string]string{"origin": "device-3", "k": "v", "via": "sync"}, got[0].Metadata, "the event's own origin wins")
	require.Equal(t, map[string]string{"origin": "device-17", "via": "sync"}, got[1].Metadata)
	requireCopied(t, src, dst, nil, extra)

	// A rerun from the start compares equal: the added metadata is part of
	// the content, the same on every run.
	require.NoError(t, dst.SaveCheckpoint(ctx, "c", 0))
	stats, err := replicate.Copy(ctx, src, dst, &replicate.Options{Checkpoint: "c", Metadata: extra})
	require.NoError(t, err)
	require.Equal(t, int64(3), stats.Skipped)

	// Other metadata is other content.
	require.NoError(t, dst.SaveCheckpoint(ctx, "c", 0))
	_, err = replicate.Copy(ctx, src, dst, &replicate.Options{Checkpoint: "c", Metadata: map[string]string{"origin": "device-18"}})
	require.ErrorIs(t, err, eventstore.ErrDuplicateEvent)
}

// twoDevices returns a device store whose "shared" aggregate a server
// store also has, written by someone else, and other aggregates.
func twoDevices(t *testing.T) (device, server *memory.Store) {
	device, server = newMemory(t), newMemory(t)
	fill(t, device, []string{"mine-1", "shared", "mine-2"}, 5)
	fill(t, server, []string{"shared"}, 2)
	return device, server
}

func TestCopy_ConflictStops(t *testing.T) {
	ctx := context.Background()
	device, server := twoDevices(t)
	stats, err := replicate.Copy(ctx, device, server, &replicate.Options{Checkpoint: "c", BatchSize: 4})
	var conflict *eventstore.ConflictError
	require.ErrorAs(t, err, &conflict)
	require.Equal(t, "shared", conflict.AggregateID)
	require.Equal(t, uint64(2), conflict.Actual)
	require.Zero(t, stats.Copied, "the first batch holds shared's first event")
	cp, err := server.LoadCheckpoint(ctx, "c")
	require.NoError(t, err)
	require.Zero(t, cp)
}

func TestCopy_ConflictSkip(t *testing.T) {
	ctx := context.Background()
	device, server := twoDevices(t)
	opts := &replicate.Options{Checkpoint: "c", BatchSize: 4, OnConflict: replicate.Skip}
	stats, err := replicate.Copy(ctx, device, server, opts)
	require.NoError(t, err)
	require.Len(t, stats.Conflicts, 1)
	require.Equal(t, "shared", stats.Conflicts[0].AggregateID)
	require.Equal(t, int64(10), stats.Copied)
	require.Equal(t, int64(5), stats.ConflictSkipped)
	notShared := func(e eventstore.Event) bool { return e.AggregateID != "shared" }
	var want []eventstore.Event
	for _, e := range readAll(t, device) {
		if notShared(e) {
			want = append(want, e)
		}
	}
	got := readAll(t, server)[2:] // after the server's own two
	require.Len(t, got, len(want))
	for i := range want {
		require.Equal(t, want[i].ID, got[i].ID)
	}

	// Both sides go on writing shared, so that the device's version 6
	// would continue the server's version 5: a later call must still see
	// the fork.
	fill(t, device, []string{"shared"}, 1) // shared version 6
	_, err = server.Append(ctx, eventstore.Event{AggregateID: "shared", Type: "T", Payload: json.RawMessage(`{}`)}, eventstore.Event{AggregateID: "shared", Type: "T", Payload: json.RawMessage(`{}`)}, eventstore.Event{AggregateID: "shared", Type: "T", Payload: json.RawMessage(`{}`)})
	require.NoError(t, err) // the server's shared is at version 5 now
	stats, err = replicate.Copy(ctx, device, server, opts)
	require.NoError(t, err)
	require.Len(t, stats.Conflicts, 1, "the fork is noticed on a later call too")
	require.Zero(t, stats.Copied)
	v, err := server.Version(ctx, "shared")
	require.NoError(t, err)
	require.Equal(t, uint64(5), v, "the device's version 6 was stacked on the server's history")

	_, err = replicate.Copy(ctx, device, server, &replicate.Options{Checkpoint: "c2", BatchSize: 4})
	require.ErrorIs(t, err, eventstore.ErrConflict, "Stop also notices it")
}

// TestCopy_Download gives a device a read copy of some of the server's
// aggregates.
func TestCopy_Download(t *testing.T) {
	ctx := context.Background()
	server, device := newMemory(t), newMemory(t)
	fill(t, server, []string{"catalog-1", "order-9", "catalog-2"}, 4)
	opts := &replicate.Options{Checkpoint: "from:server", Filter: eventstore.Filter{AggregatePrefix: "catalog-"}}
	stats, err := replicate.Copy(ctx, server, device, opts)
	require.NoError(t, err)
	require.Equal(t, int64(8), stats.Copied)
	require.Equal(t, uint64(12), stats.Checkpoint, "positions that the filter left out are behind the checkpoint too")
	requireCopied(t, server, device, func(e eventstore.Event) bool { return opts.Filter.Match(e) }, nil)
}

func TestFollow(t *testing.T) {
	src, dst := newMemory(t), newMemory(t)
	fill(t, src, []string{"a"}, 10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		stats replicate.Stats
		err   error
	}
	done := make(chan result, 1)
	go func() {
		stats, err := replicate.Follow(ctx, src, dst, &replicate.Options{Checkpoint: "c", BatchSize: 8, Linger: time.Millisecond})
		done <- result{stats, err}
	}()
	fill(t, src, []string{"a", "b"}, 15) // 40 events, 30 live or not
	deadline := time.Now().Add(30 * time.Second)
	for len(readAll(t, dst)) < 40 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	res := <-done
	require.ErrorIs(t, res.err, context.Canceled)
	requireCopied(t, src, dst, nil, nil)
	require.Equal(t, int64(40), res.stats.Copied)
	require.Equal(t, uint64(40), res.stats.SourceHead)
}

func TestCopy_InvalidOptions(t *testing.T) {
	ctx := context.Background()
	src, dst := newMemory(t), newMemory(t)
	for name, opts := range map[string]*replicate.Options{
		"nil":          nil,
		"NoCheckpoint": {},
		"Types":        {Checkpoint: "c", Filter: eventstore.Filter{Types: []string{"T"}}},
		"EmptyKey":     {Checkpoint: "c", Metadata: map[string]string{"": "x"}},
		"Policy":       {Checkpoint: "c", OnConflict: 7},
	} {
		_, err := replicate.Copy(ctx, src, dst, opts)
		require.ErrorIs(t, err, replicate.ErrInvalidOptions, name)
	}
	_, err := replicate.Copy(ctx, src, dst, &replicate.Options{Checkpoint: "a\x00"})
	require.ErrorIs(t, err, eventstore.ErrInvalidCheckpoint)
}

// TestCopy_DefaultBatchSize checks that a zero BatchSize fills each Import
// up to eventstore.MaxImportEvents: the bulk of a copy's cost is per
// Import (a transaction, its fsyncs, a checkpoint save).
func TestCopy_DefaultBatchSize(t *testing.T) {
	ctx := context.Background()
	src, dst := newMemory(t), newMemory(t)
	n := eventstore.MaxImportEvents + 10
	batch := make([]eventstore.Event, 0, eventstore.MaxImportEvents)
	ts := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		batch = append(batch, eventstore.Event{
			ID:          fmt.Sprintf("00000000-0000-7000-8000-%012d", i+1),
			AggregateID: fmt.Sprintf("agg-%d", i%100),
			Type:        "Happened",
			Payload:     json.RawMessage(`{}`),
			Version:     uint64(i/100 + 1),
			Timestamp:   ts,
		})
		if len(batch) == cap(batch) || i == n-1 {
			_, err := src.Import(ctx, batch)
			require.NoError(t, err)
			batch = batch[:0]
		}
	}
	stats, err := replicate.Copy(ctx, src, dst, &replicate.Options{Checkpoint: "c"})
	require.NoError(t, err)
	require.Equal(t, int64(n), stats.Copied)
	require.Equal(t, 2, stats.Batches)
	requireCopied(t, src, dst, nil, nil)
}

// countingSource counts the events its ReadAll has yielded.
type countingSource struct {
	eventstore.Store
	read atomic.Int64
}

func (s *countingSource) ReadAll(ctx context.Context, after uint64) iter.Seq2[eventstore.Event, error] {
	return func(yield func(eventstore.Event, error) bool) {
		for e, err := range s.Store.ReadAll(ctx, after) {
			if err == nil {
				s.read.Add(1)
			}
			if !yield(e, err) {
				return
			}
		}
	}
}

// waitingImporter holds its first Import until the source has yielded
// want events, or gives up after a while and records that it did.
type waitingImporter struct {
	*memory.Store
	src      *countingSource
	want     int64
	calls    int
	gaveUp   bool
	sawAhead int64
}

func (d *waitingImporter) Import(ctx context.Context, events []eventstore.Event) ([]eventstore.Event, error) {
	d.calls++
	if d.calls == 1 {
		deadline := time.Now().Add(10 * time.Second)
		for d.src.read.Load() < d.want && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		d.sawAhead = d.src.read.Load()
		d.gaveUp = d.sawAhead < d.want
	}
	return d.Store.Import(ctx, events)
}

// TestCopy_ReadsAheadWhileImporting checks that Copy reads the next batch
// from the source while an Import runs: the first Import waits until the
// source has yielded the second batch too, which a copy that reads and
// imports in turn never does.
func TestCopy_ReadsAheadWhileImporting(t *testing.T) {
	ctx := context.Background()
	mem := newMemory(t)
	fill(t, mem, []string{"a", "b", "c", "d"}, 15) // 60 events
	src := &countingSource{Store: mem}
	dst := &waitingImporter{Store: newMemory(t), src: src, want: 40}
	stats, err := replicate.Copy(ctx, src, dst, &replicate.Options{Checkpoint: "c", BatchSize: 20})
	require.NoError(t, err)
	require.False(t, dst.gaveUp, "the source was read up to %d events while the first Import waited, want 40", dst.sawAhead)
	require.Equal(t, int64(60), stats.Copied)
	require.Equal(t, 3, stats.Batches)
	requireCopied(t, mem, dst.Store, nil, nil)
}
