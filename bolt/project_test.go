package bolt_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/bolt"
	bbolt "go.etcd.io/bbolt"
)

// The read model of the tests: rm:seen holds each handled event's ID ->
// its position and how often it was handled; rm:counts holds aggregate ID
// -> events handled.
var (
	rmSeen   = []byte("rm:seen")
	rmCounts = []byte("rm:counts")
)

// countHandler is a Project handler that records e in rmSeen and rmCounts.
func countHandler(tx *bolt.ProjectTx, e eventstore.Event) error {
	seen, err := tx.CreateBucketIfNotExists(rmSeen)
	if err != nil {
		return err
	}
	counts, err := tx.CreateBucketIfNotExists(rmCounts)
	if err != nil {
		return err
	}
	var times uint64
	if v := seen.Get([]byte(e.ID)); v != nil {
		times = binary.BigEndian.Uint64(v[8:])
	}
	if err := seen.Put([]byte(e.ID), binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, e.Position), times+1)); err != nil {
		return err
	}
	var n uint64
	if v := counts.Get([]byte(e.AggregateID)); v != nil {
		n = binary.BigEndian.Uint64(v)
	}
	return counts.Put([]byte(e.AggregateID), binary.BigEndian.AppendUint64(nil, n+1))
}

// readModel is what countHandler wrote.
type readModel struct {
	seen   map[string][2]uint64 // event ID -> position, times handled
	counts map[string]uint64
}

// loadReadModel reads the read model of countHandler and the checkpoint
// name, in one transaction... as far as the API allows: the checkpoint is
// read right after (no projection may run meanwhile).
func loadReadModel(t testing.TB, s *bolt.Store, name string) (readModel, uint64) {
	t.Helper()
	ctx := context.Background()
	rm := readModel{seen: map[string][2]uint64{}, counts: map[string]uint64{}}
	err := s.ViewReadModel(ctx, func(tx *bolt.ReadModelTx) error {
		if b := tx.Bucket(rmSeen); b != nil {
			if err := b.ForEach(func(k, v []byte) error {
				rm.seen[string(k)] = [2]uint64{binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:])}
				return nil
			}); err != nil {
				return err
			}
		}
		if b := tx.Bucket(rmCounts); b != nil {
			return b.ForEach(func(k, v []byte) error {
				rm.counts[string(k)] = binary.BigEndian.Uint64(v)
				return nil
			})
		}
		return nil
	})
	if err != nil {
		t.Fatalf("view read model: %v", err)
	}
	cp, err := s.LoadCheckpoint(ctx, name)
	if err != nil {
		t.Fatalf("load checkpoint: %v", err)
	}
	return rm, cp
}

// verifyReadModel checks that the read model of countHandler holds exactly
// the events filter selects up to the checkpoint, each handled once.
func verifyReadModel(t testing.TB, s *bolt.Store, name string, filter eventstore.Filter) (readModel, uint64) {
	t.Helper()
	rm, cp := loadReadModel(t, s, name)
	want := map[string]uint64{}
	counts := map[string]uint64{}
	for e, err := range s.ReadAll(context.Background(), 0) {
		if err != nil {
			t.Fatal(err)
		}
		if e.Position > cp {
			break
		}
		if filter.Match(e) {
			want[e.ID] = e.Position
			counts[e.AggregateID]++
		}
	}
	for id, p := range want {
		got, ok := rm.seen[id]
		switch {
		case !ok:
			t.Errorf("event %s at position %d <= checkpoint %d is missing from the read model", id, p, cp)
		case got[0] != p:
			t.Errorf("event %s recorded at position %d, stored at %d", id, got[0], p)
		case got[1] != 1:
			t.Errorf("event %s at position %d handled %d times", id, p, got[1])
		}
	}
	for id, got := range rm.seen {
		if _, ok := want[id]; !ok {
			t.Errorf("read model holds event %s at position %d, not selected up to checkpoint %d", id, got[0], cp)
		}
	}
	for agg, n := range counts {
		if rm.counts[agg] != n {
			t.Errorf("aggregate %s counted %d, want %d", agg, rm.counts[agg], n)
		}
	}
	if len(rm.counts) != len(counts) {
		t.Errorf("%d aggregates counted, want %d", len(rm.counts), len(counts))
	}
	return rm, cp
}

// projectEvents returns n events: types Deposited, Withdrawn, Noted in
// turn, in runs of 4 of aggregates acct-0..4 and other-0..1, every third
// one tagged.
func projectEvents(start, n int) []eventstore.Event {
	events := make([]eventstore.Event, n)
	for i := range events {
		k := start + i
		agg := fmt.Sprintf("acct-%d", k/4%5)
		if k/4%7 == 3 {
			agg = fmt.Sprintf("other-%d", k/4%2)
		}
		events[i] = eventstore.Event{
			AggregateID: agg,
			Type:        []string{"Deposited", "Withdrawn", "Noted"}[k%3],
			Payload:     []byte(fmt.Sprintf(`{"k":%d}`, k)),
		}
		if k%3 == 1 {
			events[i].Tags = []string{"big"}
		}
	}
	return events
}

func mustAppend(t testing.TB, s *bolt.Store, events ...eventstore.Event) []eventstore.Event {
	t.Helper()
	var out []eventstore.Event
	for len(events) > 0 {
		n := 1 // a run of one aggregate's events
		for n < len(events) && events[n].AggregateID == events[0].AggregateID {
			n++
		}
		stored, err := s.Append(context.Background(), events[:n]...)
		if err != nil {
			t.Error(err)
			return out
		}
		out = append(out, stored...)
		events = events[n:]
	}
	return out
}

// projectToFailure runs a Project of every event that should fail; if it
// does not within 30s, it returns the deadline's error.
func projectToFailure(s *bolt.Store, name string, handle func(*bolt.ProjectTx, eventstore.Event) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return s.Project(ctx, name, eventstore.Filter{}, handle)
}

// runner is a Project running in a goroutine.
type runner struct {
	cancel context.CancelFunc
	done   chan error
}

func startProject(s *bolt.Store, name string, filter eventstore.Filter, handle func(*bolt.ProjectTx, eventstore.Event) error) *runner {
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Project(ctx, name, filter, handle) }()
	return r
}

// stop cancels the runner and checks that it returned context.Canceled.
func (r *runner) stop(t testing.TB) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Project returned %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Project did not return after its ctx ended")
	}
}

// waitCheckpoint waits (generously) until the checkpoint name reaches want.
func waitCheckpoint(t testing.TB, s *bolt.Store, name string, want uint64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		cp, err := s.LoadCheckpoint(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		if cp == want {
			return
		}
		if cp > want {
			t.Fatalf("checkpoint %d passed %d", cp, want)
		}
		if time.Now().After(deadline) {
			t.Fatalf("checkpoint %d never reached %d", cp, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func storeHead(t testing.TB, s *bolt.Store) uint64 {
	t.Helper()
	h, err := s.Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestProject_CatchUpAndFollow(t *testing.T) {
	s := MustOpen(t, nil)
	filter := eventstore.Filter{Types: []string{"Deposited", "Withdrawn"}}
	mustAppend(t, s, projectEvents(0, 600)...) // three batches
	r := startProject(s, "balances", filter, countHandler)
	waitCheckpoint(t, s, "balances", 600)
	verifyReadModel(t, s, "balances", filter)

	// Live: appends from other goroutines while it runs.
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				mustAppend(t, s, projectEvents(1000*g+10*i, 1+i%5)...)
			}
		}()
	}
	wg.Wait()
	// The last events are ones the filter does not select: the checkpoint
	// still reaches the head.
	mustAppend(t, s, eventstore.Event{AggregateID: "acct-1", Type: "Noted", Payload: []byte(`{}`)})
	waitCheckpoint(t, s, "balances", storeHead(t, s))
	r.stop(t)
	rm, _ := verifyReadModel(t, s, "balances", filter)
	if len(rm.seen) < 400 {
		t.Fatalf("only %d events projected", len(rm.seen))
	}
}

func TestProject_Filters(t *testing.T) {
	s := MustOpen(t, nil)
	mustAppend(t, s, projectEvents(0, 700)...)
	for i, filter := range []eventstore.Filter{
		{},
		{Types: []string{"Withdrawn"}},
		{Tags: []string{"big"}},
		{AggregatePrefix: "other-"},
		{Types: []string{"Deposited", "Noted"}, AggregatePrefix: "acct-"},
		{Items: []eventstore.Item{{Types: []string{"Noted"}}, {Tags: []string{"big"}}}},
		{Types: []string{"NoSuchType"}},
	} {
		t.Run(fmt.Sprintf("%d", i), func(t *testing.T) {
			name := fmt.Sprintf("filter-%d", i)
			rm := []byte("rm:" + name)
			var handled []uint64
			r := startProject(s, name, filter, func(tx *bolt.ProjectTx, e eventstore.Event) error {
				if !filter.Match(e) {
					return fmt.Errorf("event %d does not match the filter", e.Position)
				}
				handled = append(handled, e.Position)
				b, err := tx.CreateBucketIfNotExists(rm)
				if err != nil {
					return err
				}
				return b.Put(binary.BigEndian.AppendUint64(nil, e.Position), nil)
			})
			waitCheckpoint(t, s, name, 700)
			r.stop(t)
			var want []uint64
			for e, err := range s.ReadAll(context.Background(), 0) {
				if err != nil {
					t.Fatal(err)
				}
				if filter.Match(e) {
					want = append(want, e.Position)
				}
			}
			if !slices.Equal(handled, want) {
				t.Fatalf("handled %d events %v..., want %d", len(handled), handled[:min(5, len(handled))], len(want))
			}
			var stored int
			err := s.ViewReadModel(context.Background(), func(tx *bolt.ReadModelTx) error {
				if b := tx.Bucket(rm); b != nil {
					stored = b.Stats().KeyN
				}
				return nil
			})
			if err != nil || stored != len(want) {
				t.Fatalf("read model holds %d events (%v), want %d", stored, err, len(want))
			}
		})
	}
}

func TestProject_Resume(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	filter := eventstore.Filter{AggregatePrefix: "acct-"}
	s := MustOpenPath(t, path, nil)
	mustAppend(t, s, projectEvents(0, 300)...)
	r := startProject(s, "p", filter, countHandler)
	waitCheckpoint(t, s, "p", 300)
	r.stop(t)
	mustAppend(t, s, projectEvents(300, 300)...)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = MustOpenPath(t, path, nil)
	_, cp := verifyReadModel(t, s, "p", filter)
	if cp != 300 {
		t.Fatalf("checkpoint %d after the restart, want 300", cp)
	}
	r = startProject(s, "p", filter, countHandler)
	waitCheckpoint(t, s, "p", 600)
	r.stop(t)
	verifyReadModel(t, s, "p", filter)
}

func TestProject_HandlerError(t *testing.T) {
	s := MustOpen(t, nil)
	stored := mustAppend(t, s, projectEvents(0, 600)...)
	boom := errors.New("boom")
	const failAt = 400 // in the second batch (257..512)
	err := projectToFailure(s, "p", func(tx *bolt.ProjectTx, e eventstore.Event) error {
		if err := countHandler(tx, e); err != nil {
			return err
		}
		if e.Position == failAt {
			return fmt.Errorf("handling: %w", boom)
		}
		return nil
	})
	var pe *bolt.ProjectError
	if !errors.As(err, &pe) {
		t.Fatalf("Project returned %v, want a *ProjectError", err)
	}
	if !errors.Is(err, boom) {
		t.Fatalf("%v does not match the handler's error", err)
	}
	if pe.Name != "p" || pe.Position != failAt || pe.EventID != stored[failAt-1].ID {
		t.Fatalf("ProjectError %+v, want projection p, position %d, ID %s", pe, failAt, stored[failAt-1].ID)
	}
	rm, cp := verifyReadModel(t, s, "p", eventstore.Filter{})
	if cp != 256 || len(rm.seen) != 256 {
		t.Fatalf("checkpoint %d, %d events in the read model after the failed batch; want the first batch, 256", cp, len(rm.seen))
	}

	// A handler that ignores a refused name fails its batch too.
	err = projectToFailure(s, "p", func(tx *bolt.ProjectTx, e eventstore.Event) error {
		if err := countHandler(tx, e); err != nil {
			return err
		}
		if e.Position == 300 {
			_ = tx.DeleteBucket([]byte("events"))
		}
		return nil
	})
	if !errors.As(err, &pe) || !errors.Is(err, bolt.ErrNotReadModel) || pe.Position != 300 {
		t.Fatalf("got %v, want a ProjectError at position 300 matching ErrNotReadModel", err)
	}
	if _, cp := verifyReadModel(t, s, "p", eventstore.Filter{}); cp != 256 {
		t.Fatalf("checkpoint %d, want 256", cp)
	}
}

// A batch ends after the event whose payloads bring it to 1 MiB: with
// payloads of 300 KiB, batches of 4 events.
func TestProject_BatchBytes(t *testing.T) {
	s := MustOpen(t, nil)
	payload := []byte(`{"x":"` + strings.Repeat("x", 300<<10) + `"}`)
	for range 10 {
		mustAppend(t, s, eventstore.Event{AggregateID: "big", Type: "Big", Payload: payload})
	}
	boom := errors.New("boom")
	err := projectToFailure(s, "p", func(tx *bolt.ProjectTx, e eventstore.Event) error {
		if err := countHandler(tx, e); err != nil {
			return err
		}
		if e.Position == 6 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want boom", err)
	}
	if rm, cp := verifyReadModel(t, s, "p", eventstore.Filter{}); cp != 4 || len(rm.seen) != 4 {
		t.Fatalf("checkpoint %d, %d events after a failure at position 6; want a first batch of 4", cp, len(rm.seen))
	}
}

// storeBuckets are the store's own buckets (see the package doc).
var storeBuckets = []string{"events", "positions", "types", "timestamps", "ids", "tags", "snapshots", "checkpoints", "meta"}

func TestProjectTx_ErrNotReadModel(t *testing.T) {
	ctx := context.Background()
	s := MustOpen(t, nil)
	mustAppend(t, s, projectEvents(0, 10)...)
	if err := s.SaveSnapshot(ctx, eventstore.Snapshot{AggregateID: "acct-1", Version: 1, Schema: "v1", State: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCheckpoint(ctx, "other", 7); err != nil {
		t.Fatal(err)
	}
	bad := append(slices.Clone(storeBuckets), "", "rm:", "rm", "RM:x", " rm:x", "x/rm:y", "\x00")

	// Every refusal in one reset, which returns nil: it still fails.
	var errs []error
	err := s.ResetProjection(ctx, "p", func(tx *bolt.ProjectTx) error {
		for _, name := range bad {
			if b := tx.Bucket([]byte(name)); b != nil {
				errs = append(errs, fmt.Errorf("Bucket(%q) is not nil", name))
			}
			_, err1 := tx.CreateBucketIfNotExists([]byte(name))
			_, err2 := tx.CreateBucket([]byte(name))
			err3 := tx.DeleteBucket([]byte(name))
			for _, err := range []error{err1, err2, err3} {
				if !errors.Is(err, bolt.ErrNotReadModel) {
					errs = append(errs, fmt.Errorf("name %q: got %v, want ErrNotReadModel", name, err))
				}
			}
		}
		if _, err := tx.CreateBucket([]byte("rm:fine")); err != nil {
			errs = append(errs, err)
		}
		return nil
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(err, bolt.ErrNotReadModel) {
		t.Fatalf("ResetProjection returned %v after refused names, want ErrNotReadModel", err)
	}

	// A handler that returns the refusal: the batch rolls back.
	for _, name := range storeBuckets {
		err := projectToFailure(s, "p", func(tx *bolt.ProjectTx, e eventstore.Event) error {
			if _, err := tx.CreateBucket([]byte("rm:fine")); err != nil {
				return err
			}
			return tx.DeleteBucket([]byte(name))
		})
		var pe *bolt.ProjectError
		if !errors.As(err, &pe) || !errors.Is(err, bolt.ErrNotReadModel) || pe.Position != 1 {
			t.Fatalf("DeleteBucket(%q) in a handler: Project returned %v", name, err)
		}
	}

	// Nothing of the above was committed: no rm:fine, checkpoint p unset.
	var names []string
	err = s.ViewReadModel(ctx, func(tx *bolt.ReadModelTx) error {
		return tx.ForEachBucket(func(name []byte, _ *bbolt.Bucket) error {
			names = append(names, string(name))
			return nil
		})
	})
	if err != nil || len(names) != 0 {
		t.Fatalf("read models %v (%v), want none", names, err)
	}
	if cp, _ := s.LoadCheckpoint(ctx, "p"); cp != 0 {
		t.Fatalf("checkpoint %d, want 0", cp)
	}
	// ViewReadModel refuses the same names.
	for _, name := range bad {
		err := s.ViewReadModel(ctx, func(tx *bolt.ReadModelTx) error {
			if b := tx.Bucket([]byte(name)); b != nil {
				return fmt.Errorf("Bucket(%q) is not nil", name)
			}
			return nil
		})
		if !errors.Is(err, bolt.ErrNotReadModel) {
			t.Fatalf("ViewReadModel, Bucket(%q): got %v, want ErrNotReadModel", name, err)
		}
	}

	// The store is whole: its data, and Check.
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(mustEvents(t, s)); n != 10 {
		t.Fatalf("%d events, want 10", n)
	}
	if _, err := s.LoadSnapshot(ctx, "acct-1"); err != nil {
		t.Fatal(err)
	}
	if cp, _ := s.LoadCheckpoint(ctx, "other"); cp != 7 {
		t.Fatalf("checkpoint other %d, want 7", cp)
	}
}

func mustEvents(t testing.TB, s *bolt.Store) []eventstore.Event {
	t.Helper()
	var out []eventstore.Event
	for e, err := range s.ReadAll(context.Background(), 0) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// ForEachBucket lists the read models only; Check, Open and Backup accept
// read models with nested buckets.
func TestReadModel_CheckAndBackup(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "events.db")
	s := MustOpenPath(t, path, nil)
	mustAppend(t, s, projectEvents(0, 50)...)
	r := startProject(s, "nested", eventstore.Filter{}, func(tx *bolt.ProjectTx, e eventstore.Event) error {
		b, err := tx.CreateBucketIfNotExists([]byte("rm:by-aggregate"))
		if err != nil {
			return err
		}
		sub, err := b.CreateBucketIfNotExists([]byte(e.AggregateID))
		if err != nil {
			return err
		}
		if err := sub.Put(binary.BigEndian.AppendUint64(nil, e.Position), bytes.Repeat([]byte("x"), 100)); err != nil {
			return err
		}
		_, err = tx.CreateBucketIfNotExists([]byte("rm:" + e.Type))
		return err
	})
	waitCheckpoint(t, s, "nested", 50)
	r.stop(t)
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
	var names []string
	err := s.ViewReadModel(ctx, func(tx *bolt.ReadModelTx) error {
		return tx.ForEachBucket(func(name []byte, _ *bbolt.Bucket) error {
			names = append(names, string(name))
			return nil
		})
	})
	if want := []string{"rm:Deposited", "rm:Noted", "rm:Withdrawn", "rm:by-aggregate"}; err != nil || !slices.Equal(names, want) {
		t.Fatalf("ForEachBucket: %v (%v), want %v", names, err, want)
	}

	var buf bytes.Buffer
	if _, err := s.Backup(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(dir, "copy.db")
	if err := os.WriteFile(copyPath, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	c := MustOpenPath(t, copyPath, nil)
	if err := c.Check(ctx); err != nil {
		t.Fatalf("check the backup: %v", err)
	}
	var n int
	err = c.ViewReadModel(ctx, func(tx *bolt.ReadModelTx) error {
		return tx.Bucket([]byte("rm:by-aggregate")).ForEachBucket(func(k []byte) error {
			n += tx.Bucket([]byte("rm:by-aggregate")).Bucket(k).Stats().KeyN
			return nil
		})
	})
	if err != nil || n != 50 {
		t.Fatalf("the backup's read model holds %d events (%v), want 50", n, err)
	}
	if cp, _ := c.LoadCheckpoint(ctx, "nested"); cp != 50 {
		t.Fatalf("the backup's checkpoint is %d, want 50", cp)
	}
	// Read-only, as the eventstore command opens files.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	ro, err := bolt.Open(copyPath, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if err := ro.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ro.Project(ctx, "nested", eventstore.Filter{}, countHandler); !errors.Is(err, bolt.ErrReadOnly) {
		t.Fatalf("Project on a read-only store: %v, want ErrReadOnly", err)
	}
}

func TestResetProjection(t *testing.T) {
	ctx := context.Background()
	s := MustOpen(t, nil)
	filter := eventstore.Filter{Types: []string{"Deposited"}}
	mustAppend(t, s, projectEvents(0, 400)...)
	r := startProject(s, "p", filter, countHandler)
	waitCheckpoint(t, s, "p", 400)

	called := false
	err := s.ResetProjection(ctx, "p", func(tx *bolt.ProjectTx) error { called = true; return nil })
	if !errors.Is(err, eventstore.ErrProjectionRunning) || called {
		t.Fatalf("ResetProjection while running: %v (reset called: %v), want ErrProjectionRunning", err, called)
	}
	// Another name is free.
	if err := s.ResetProjection(ctx, "q", nil); err != nil {
		t.Fatal(err)
	}
	r.stop(t)
	before, _ := verifyReadModel(t, s, "p", filter)

	// A failing reset changes nothing.
	boom := errors.New("boom")
	err = s.ResetProjection(ctx, "p", func(tx *bolt.ProjectTx) error {
		if err := tx.DeleteBucket(rmSeen); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want boom", err)
	}
	if rm, cp := loadReadModel(t, s, "p"); cp != 400 || len(rm.seen) != len(before.seen) {
		t.Fatalf("a failed reset changed the projection: checkpoint %d, %d events", cp, len(rm.seen))
	}

	err = s.ResetProjection(ctx, "p", func(tx *bolt.ProjectTx) error {
		if tx.Name() != "p" {
			return fmt.Errorf("Name() = %q", tx.Name())
		}
		return errors.Join(tx.DeleteBucket(rmSeen), tx.DeleteBucket(rmCounts))
	})
	if err != nil {
		t.Fatal(err)
	}
	if rm, cp := loadReadModel(t, s, "p"); cp != 0 || len(rm.seen) != 0 || len(rm.counts) != 0 {
		t.Fatalf("after the reset: checkpoint %d, %d events, %d counts; want none", cp, len(rm.seen), len(rm.counts))
	}
	// The rebuild replays every event, once.
	r = startProject(s, "p", filter, countHandler)
	waitCheckpoint(t, s, "p", 400)
	r.stop(t)
	after, _ := verifyReadModel(t, s, "p", filter)
	if len(after.seen) != len(before.seen) {
		t.Fatalf("rebuilt %d events, had %d", len(after.seen), len(before.seen))
	}
}

// Two Projects of one name: the second waits while the first runs, then
// takes over from its checkpoint.
func TestProject_OneRunnerPerName(t *testing.T) {
	s := MustOpen(t, nil)
	filter := eventstore.Filter{}
	var running, overlaps atomic.Int32
	handler := func(who *atomic.Int64) func(*bolt.ProjectTx, eventstore.Event) error {
		return func(tx *bolt.ProjectTx, e eventstore.Event) error {
			if running.Add(1) != 1 {
				overlaps.Add(1)
			}
			defer running.Add(-1)
			who.Add(1)
			return countHandler(tx, e)
		}
	}
	var first, second atomic.Int64
	r1 := startProject(s, "p", filter, handler(&first))
	mustAppend(t, s, projectEvents(0, 100)...)
	waitCheckpoint(t, s, "p", 100)
	r2 := startProject(s, "p", filter, handler(&second))
	for i := range 30 {
		mustAppend(t, s, projectEvents(100+10*i, 10)...)
	}
	waitCheckpoint(t, s, "p", 400)
	time.Sleep(50 * time.Millisecond) // a chance for the second to (wrongly) run
	if n := second.Load(); n != 0 {
		t.Fatalf("the standby handled %d events while the first ran", n)
	}
	if err := s.ResetProjection(context.Background(), "p", nil); !errors.Is(err, eventstore.ErrProjectionRunning) {
		t.Fatalf("ResetProjection with a runner and a standby: %v", err)
	}
	r1.stop(t)
	mustAppend(t, s, projectEvents(400, 100)...)
	waitCheckpoint(t, s, "p", 500)
	if n := second.Load(); n != 100 {
		t.Fatalf("the standby handled %d events after taking over, want 100", n)
	}
	r2.stop(t)
	if n := overlaps.Load(); n != 0 {
		t.Fatalf("%d handler calls overlapped", n)
	}
	verifyReadModel(t, s, "p", filter)

	// A standby whose ctx ends returns.
	r1 = startProject(s, "p", filter, handler(&first))
	r2 = startProject(s, "p", filter, handler(&second))
	r2.stop(t)
	r1.stop(t)
}

// Project, running or waiting, returns ErrClosed when the store closes.
func TestProject_Close(t *testing.T) {
	s, err := bolt.Open(filepath.Join(t.TempDir(), "events.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, projectEvents(0, 10)...)
	r1 := startProject(s, "p", eventstore.Filter{}, countHandler)
	r2 := startProject(s, "p", eventstore.Filter{}, countHandler)
	waitCheckpoint(t, s, "p", 10)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*runner{r1, r2} {
		select {
		case err := <-r.done:
			if !errors.Is(err, eventstore.ErrClosed) {
				t.Fatalf("Project returned %v after Close, want ErrClosed", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Project did not return after Close")
		}
	}
	if err := s.Project(context.Background(), "p", eventstore.Filter{}, countHandler); !errors.Is(err, eventstore.ErrClosed) {
		t.Fatalf("Project after Close: %v", err)
	}
}

// A panic in the handler rolls the batch back, goes on to Project's
// caller, and frees the name.
func TestProject_HandlerPanic(t *testing.T) {
	s := MustOpen(t, nil)
	mustAppend(t, s, projectEvents(0, 10)...)
	func() {
		defer func() {
			if r := recover(); r != "oops" {
				t.Fatalf("recovered %v, want the handler's panic", r)
			}
		}()
		projectToFailure(s, "p", func(tx *bolt.ProjectTx, e eventstore.Event) error {
			if err := countHandler(tx, e); err != nil {
				return err
			}
			if e.Position == 5 {
				panic("oops")
			}
			return nil
		})
	}()
	if rm, cp := loadReadModel(t, s, "p"); cp != 0 || len(rm.seen) != 0 {
		t.Fatalf("after a panic: checkpoint %d, %d events", cp, len(rm.seen))
	}
	r := startProject(s, "p", eventstore.Filter{}, countHandler)
	waitCheckpoint(t, s, "p", 10)
	r.stop(t)
	verifyReadModel(t, s, "p", eventstore.Filter{})
}
