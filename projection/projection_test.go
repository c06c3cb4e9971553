package projection_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/bolt"
	"github.com/eventstore-go/eventstore/internal/pgtest"
	"github.com/eventstore-go/eventstore/memory"
	"github.com/eventstore-go/eventstore/postgres"
	"github.com/eventstore-go/eventstore/projection"
)

// store is what every backend is: a Store and a CheckpointStore.
type store interface {
	eventstore.Store
	eventstore.CheckpointStore
}

// backend opens a fresh store for one test; reopen closes it and opens the
// same storage again (memory: keeps the same store, since nothing
// survives a close).
type backend struct {
	name string
	open func(t testing.TB) (s store, reopen func() store)
}

var backends = []backend{
	{"memory", func(t testing.TB) (store, func() store) {
		s := memory.New(nil)
		t.Cleanup(func() { s.Close() })
		return s, func() store { return s }
	}},
	{"bolt", func(t testing.TB) (store, func() store) {
		path := filepath.Join(t.TempDir(), "events.db")
		open := func() store {
			s, err := bolt.Open(path, nil)
			if err != nil {
				t.Fatalf("bolt.Open: %v", err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
		s := open()
		return s, func() store {
			s.Close()
			s = open()
			return s
		}
	}},
	{"postgres", func(t testing.TB) (store, func() store) {
		schema := pgtest.FreshSchema(t)
		open := func() store {
			s, err := postgres.Open(context.Background(), pgtest.DSN(), &postgres.Options{Schema: schema})
			if err != nil {
				t.Fatalf("postgres.Open: %v", err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
		s := open()
		return s, func() store {
			s.Close()
			s = open()
			return s
		}
	}},
}

// forEachBackend runs test once per backend, as a subtest named after it.
func forEachBackend(t *testing.T, test func(t *testing.T, b backend)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			if b.name == "postgres" {
				pgtest.Admin(t) // skip loudly (fail under CI=true) without a server
			}
			test(t, b)
		})
	}
}

// model is a read model that records every event it is handed, so tests
// can check what was handled, in which order, how often, and by whom.
type model struct {
	mu      sync.Mutex
	handled []uint64 // positions, in the order handled
	by      []string // the runner of each, when several share the model
	resets  int
}

func (m *model) handler(runner string) func(context.Context, eventstore.Event) error {
	return func(_ context.Context, e eventstore.Event) error {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.handled = append(m.handled, e.Position)
		m.by = append(m.by, runner)
		return nil
	}
}

func (m *model) reset(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.handled, m.by = nil, nil
	m.resets++
	return nil
}

func (m *model) positions() []uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.handled)
}

func (m *model) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.handled)
}

// requireExactly fails unless got is want in order, each once.
func requireExactly(t *testing.T, got, want []uint64) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("handled %d events %s, want %d events %s", len(got), summary(got), len(want), summary(want))
	}
}

// summary shortens a list of positions for a failure message, showing
// repeats and gaps.
func summary(ps []uint64) string {
	var b []string
	for i := 0; i < len(ps); {
		j := i
		for j+1 < len(ps) && ps[j+1] == ps[j]+1 {
			j++
		}
		if i == j {
			b = append(b, fmt.Sprint(ps[i]))
		} else {
			b = append(b, fmt.Sprintf("%d-%d", ps[i], ps[j]))
		}
		i = j + 1
	}
	return "[" + strings.Join(b, " ") + "]"
}

// seq returns from, from+1, ..., to.
func seq(from, to uint64) []uint64 {
	var s []uint64
	for p := from; p <= to; p++ {
		s = append(s, p)
	}
	return s
}

// appendN appends n events of type typ, one per call, spread over a few
// aggregates.
func appendN(t *testing.T, s eventstore.Store, n int, typ string) {
	t.Helper()
	for i := range n {
		e, err := eventstore.NewEvent(fmt.Sprintf("agg-%d", i%7), typ, map[string]int{"i": i})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Append(context.Background(), e); err != nil {
			t.Fatalf("append: %v", err)
		}
	}
}

// eventually polls cond until it holds, failing after a deadline generous
// enough for a loaded machine.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// start runs Run in a goroutine. stop cancels its ctx and returns Run's
// error; done is closed when Run has returned, after which stop returns
// its error at once.
func start(t *testing.T, s store, p projection.Projection, opts *projection.Options) (stop func() error, done <-chan struct{}) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan struct{})
	var err error
	go func() {
		err = projection.Run(ctx, s, s, p, opts)
		close(ch)
	}()
	stop = func() error {
		cancel()
		select {
		case <-ch:
			return err
		case <-time.After(60 * time.Second):
			return errors.New("Run did not return within 60s of its ctx ending")
		}
	}
	t.Cleanup(func() { stop() })
	return stop, ch
}

func checkpoint(t *testing.T, s store, name string) uint64 {
	t.Helper()
	cp, err := s.LoadCheckpoint(context.Background(), name)
	if err != nil {
		t.Fatalf("LoadCheckpoint: %v", err)
	}
	return cp
}

// fast are options that make tests quick: small batches, a short idle.
func fast() *projection.Options {
	return &projection.Options{BatchSize: 7, IdleInterval: 20 * time.Millisecond}
}

func TestRun_CatchUpThenLive(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s, _ := b.open(t)
		appendN(t, s, 50, "Happened")
		m := &model{}
		stop, _ := start(t, s, projection.Projection{Name: "all", Handle: m.handler("a")}, fast())
		eventually(t, "the 50 stored events are handled", func() bool { return m.count() >= 50 })

		// Live: appended while the projection follows, in its goroutine.
		appendN(t, s, 30, "Happened")
		eventually(t, "the 30 live events are handled", func() bool { return m.count() >= 80 })
		if err := stop(); err != nil {
			t.Fatalf("Run after ctx ended: %v, want nil", err)
		}
		requireExactly(t, m.positions(), seq(1, 80))
		if cp := checkpoint(t, s, "all"); cp != 80 {
			t.Fatalf("checkpoint after a clean stop = %d, want 80", cp)
		}
	})
}

func TestRun_ResumeAfterStop(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s, reopen := b.open(t)
		appendN(t, s, 40, "Happened")
		m := &model{}
		// A batch larger than what is handled and an idle longer than the
		// test: only the save of the clean stop can record progress.
		opts := &projection.Options{BatchSize: 1000, IdleInterval: time.Hour}

		// Stop after the 25th event, from inside the handler, mid catch-up.
		ctx, cancel := context.WithCancel(context.Background())
		handle := m.handler("first")
		p := projection.Projection{Name: "resume", Handle: func(ctx context.Context, e eventstore.Event) error {
			err := handle(ctx, e)
			if e.Position == 25 {
				cancel()
			}
			return err
		}}
		if err := projection.Run(ctx, s, s, p, opts); err != nil {
			t.Fatalf("Run stopped by its ctx: %v, want nil", err)
		}
		if cp := checkpoint(t, s, "resume"); cp != 25 {
			t.Fatalf("checkpoint after a clean stop = %d, want 25", cp)
		}

		s = reopen()
		appendN(t, s, 10, "Happened")
		p.Handle = m.handler("second")
		stop, _ := start(t, s, p, opts)
		eventually(t, "all 50 events are handled", func() bool { return m.count() >= 50 })
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		// No event missed, and none repeated after a clean stop.
		requireExactly(t, m.positions(), seq(1, 50))
	})
}

func TestRun_HandlerError(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s, _ := b.open(t)
		appendN(t, s, 20, "Happened")
		var failing eventstore.Event
		for e, err := range s.ReadAll(context.Background(), 12) {
			if err != nil {
				t.Fatal(err)
			}
			failing = e
			break
		}
		errBoom := errors.New("boom")
		m := &model{}
		handle := m.handler("a")
		p := projection.Projection{Name: "failing", Handle: func(ctx context.Context, e eventstore.Event) error {
			if e.Position == 13 {
				return errBoom
			}
			return handle(ctx, e)
		}}
		opts := &projection.Options{BatchSize: 5, IdleInterval: time.Hour}
		err := projection.Run(context.Background(), s, s, p, opts)
		var he *projection.HandlerError
		if !errors.As(err, &he) {
			t.Fatalf("Run = %v, want a *HandlerError", err)
		}
		if !errors.Is(err, errBoom) {
			t.Fatalf("Run = %v, does not match the handler's error", err)
		}
		want := projection.HandlerError{Projection: "failing", Position: 13, EventID: failing.ID, Err: errBoom}
		if *he != want {
			t.Fatalf("HandlerError = %+v, want %+v", *he, want)
		}
		// The events before it are saved; it is not.
		if cp := checkpoint(t, s, "failing"); cp != 12 {
			t.Fatalf("checkpoint after the failure = %d, want 12", cp)
		}
		requireExactly(t, m.positions(), seq(1, 12))

		// Fixed, the projection continues with the failed event.
		p.Handle = handle
		stop, _ := start(t, s, p, opts)
		eventually(t, "the rest is handled", func() bool { return m.count() >= 20 })
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		requireExactly(t, m.positions(), seq(1, 20))
	})
}

func TestRun_Rebuild(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s, _ := b.open(t)
		appendN(t, s, 30, "Happened")
		m := &model{}
		p := projection.Projection{Name: "rebuilt", Handle: m.handler("a"), Reset: m.reset}
		stop, _ := start(t, s, p, fast())
		eventually(t, "30 events are handled", func() bool { return m.count() >= 30 })
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if m.resets != 0 {
			t.Fatalf("Reset called %d times without Rebuild", m.resets)
		}

		appendN(t, s, 5, "Happened")
		opts := fast()
		opts.Rebuild = true
		stop, _ = start(t, s, p, opts)
		eventually(t, "the rebuild handles 35 events", func() bool { return m.count() >= 35 })
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if m.resets != 1 {
			t.Fatalf("Reset called %d times, want 1", m.resets)
		}
		requireExactly(t, m.positions(), seq(1, 35)) // all replayed, after the reset
		if cp := checkpoint(t, s, "rebuilt"); cp != 35 {
			t.Fatalf("checkpoint after the rebuild = %d, want 35", cp)
		}
	})
}

func TestLag_Filtered(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s, _ := b.open(t)
		ctx := context.Background()
		appendN(t, s, 10, "Selected")
		appendN(t, s, 20, "Other")
		lag, err := projection.Lag(ctx, s, s, "selected")
		if err != nil || lag != 30 {
			t.Fatalf("Lag before running = %d, %v; want 30", lag, err)
		}
		m := &model{}
		p := projection.Projection{Name: "selected", Filter: eventstore.Filter{Types: []string{"Selected"}}, Handle: m.handler("a")}
		stop, _ := start(t, s, p, fast())
		lagIs0 := func() bool {
			lag, err := projection.Lag(ctx, s, s, "selected")
			if err != nil {
				t.Fatal(err)
			}
			return lag == 0
		}
		eventually(t, "the lag is 0 with the newest 20 events not selected", lagIs0)
		requireExactly(t, m.positions(), seq(1, 10))

		// Live events the filter skips move the checkpoint too.
		appendN(t, s, 5, "Other")
		eventually(t, "the lag is 0 again after 5 more skipped events", lagIs0)
		appendN(t, s, 1, "Selected")
		appendN(t, s, 2, "Other")
		eventually(t, "the lag is 0 after a selected event and 2 skipped", lagIs0)
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		requireExactly(t, m.positions(), append(seq(1, 10), 36))
		if cp := checkpoint(t, s, "selected"); cp != 38 {
			t.Fatalf("checkpoint = %d, want the head 38", cp)
		}
	})
}

func TestRun_OneRunnerPerName(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s, _ := b.open(t)
		appendN(t, s, 30, "Happened")
		m := &model{}
		stopA, _ := start(t, s, projection.Projection{Name: "single", Handle: m.handler("A")}, fast())
		eventually(t, "A handles the stored events", func() bool { return m.count() >= 30 })

		// B waits as a standby while A runs.
		stopB, _ := start(t, s, projection.Projection{Name: "single", Handle: m.handler("B")}, fast())
		appendN(t, s, 20, "Happened")
		eventually(t, "A handles 20 live events", func() bool { return m.count() >= 50 })
		time.Sleep(100 * time.Millisecond) // give a wrongly running B time to show up
		m.mu.Lock()
		byB := slices.Contains(m.by, "B")
		m.mu.Unlock()
		if byB {
			t.Fatalf("B handled events while A ran: %v", m.by)
		}

		// A stops; B takes over from A's checkpoint.
		if err := stopA(); err != nil {
			t.Fatal(err)
		}
		appendN(t, s, 20, "Happened")
		eventually(t, "B handles 20 more", func() bool { return m.count() >= 70 })
		if err := stopB(); err != nil {
			t.Fatal(err)
		}
		requireExactly(t, m.positions(), seq(1, 70))
		m.mu.Lock()
		defer m.mu.Unlock()
		for i, r := range m.by {
			if want := map[bool]string{true: "A", false: "B"}[i < 50]; r != want {
				t.Fatalf("event %d handled by %s, want %s: %v", i+1, r, want, m.by)
			}
		}
	})
}

// testLocker is a Locker the test drives: LockProjection waits for a
// grant, and the test can end a hold as if its connection had died.
type testLocker struct {
	grants chan struct{}
	mu     sync.Mutex
	calls  int                // LockProjection calls so far
	lose   context.CancelFunc // ends the current hold
}

func (l *testLocker) LockProjection(ctx context.Context, name string) (context.Context, func(), error) {
	l.mu.Lock()
	l.calls++
	l.mu.Unlock()
	select {
	case <-l.grants:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	held, cancel := context.WithCancel(context.Background())
	l.mu.Lock()
	l.lose = cancel
	l.mu.Unlock()
	return held, cancel, nil
}

func (l *testLocker) waiting() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls
}

func (l *testLocker) loseHold() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lose()
}

func TestRun_LostHold(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s, _ := b.open(t)
		appendN(t, s, 10, "Happened")
		lk := &testLocker{grants: make(chan struct{})}
		m := &model{}
		gate := make(chan struct{}, 100) // the handler takes one token per event
		handle := m.handler("a")
		p := projection.Projection{Name: "held", Handle: func(ctx context.Context, e eventstore.Event) error {
			select {
			case <-gate:
			case <-ctx.Done():
				return ctx.Err()
			}
			return handle(ctx, e)
		}}
		opts := &projection.Options{BatchSize: 4, IdleInterval: time.Hour, Locker: lk}
		stop, _ := start(t, s, p, opts)
		time.Sleep(50 * time.Millisecond)
		if m.count() != 0 {
			t.Fatal("handled before the lock was granted")
		}
		lk.grants <- struct{}{}
		for range 6 {
			gate <- struct{}{}
		}
		eventually(t, "6 events are handled", func() bool { return m.count() >= 6 })
		eventually(t, "the checkpoint of the first batch of 4 is saved", func() bool { return checkpoint(t, s, "held") == 4 })

		// The hold is lost while the handler waits on event 7: Run stops
		// handling without saving events 5 and 6, and waits for the lock.
		lk.loseHold()
		eventually(t, "Run waits for the lock again", func() bool { return lk.waiting() == 2 })
		for range 10 {
			gate <- struct{}{}
		}
		time.Sleep(100 * time.Millisecond)
		if n := m.count(); n != 6 {
			t.Fatalf("%d events handled after the hold was lost, want 6", n)
		}
		if cp := checkpoint(t, s, "held"); cp != 4 {
			t.Fatalf("checkpoint after the hold was lost = %d, want 4 (not saved)", cp)
		}

		// Granted again, it resumes from the checkpoint: 5 and 6 again.
		lk.grants <- struct{}{}
		eventually(t, "the rest is handled", func() bool { return m.count() >= 12 })
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		requireExactly(t, m.positions(), append(seq(1, 6), seq(5, 10)...))
	})
}

func TestRunAll_FailureStopsOthers(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s, _ := b.open(t)
		appendN(t, s, 20, "Happened")
		errBoom := errors.New("boom")
		m1, m2 := &model{}, &model{}
		fail := func(_ context.Context, e eventstore.Event) error {
			if e.Position == 5 {
				return errBoom
			}
			return nil
		}
		ps := []projection.Projection{
			{Name: "one", Handle: m1.handler("one")},
			{Name: "failing", Handle: fail},
			{Name: "two", Handle: m2.handler("two")},
		}
		done := make(chan error, 1)
		go func() { done <- projection.RunAll(context.Background(), s, s, ps, fast()) }()
		var err error
		select {
		case err = <-done:
		case <-time.After(60 * time.Second):
			t.Fatal("RunAll did not return after a projection failed")
		}
		var he *projection.HandlerError
		if !errors.As(err, &he) || he.Projection != "failing" || he.Position != 5 || !errors.Is(err, errBoom) {
			t.Fatalf("RunAll = %v, want the *HandlerError of failing at 5", err)
		}
		// The others stopped cleanly: what they handled is saved.
		for _, c := range []struct {
			name string
			m    *model
		}{{"one", m1}, {"two", m2}} {
			if cp, n := checkpoint(t, s, c.name), c.m.count(); cp != uint64(n) {
				t.Errorf("%s: checkpoint %d after handling %d events", c.name, cp, n)
			}
		}
	})
}

func TestRunAll_NoError(t *testing.T) {
	s := memory.New(nil)
	defer s.Close()
	appendN(t, s, 10, "Happened")
	m1, m2 := &model{}, &model{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- projection.RunAll(ctx, s, s, []projection.Projection{
			{Name: "one", Handle: m1.handler("one")},
			{Name: "two", Handle: m2.handler("two")},
		}, fast())
	}()
	eventually(t, "both handle 10 events", func() bool { return m1.count() == 10 && m2.count() == 10 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("RunAll after ctx ended = %v, want nil", err)
	}
	for _, name := range []string{"one", "two"} {
		if cp := checkpoint(t, s, name); cp != 10 {
			t.Errorf("%s: checkpoint %d, want 10", name, cp)
		}
	}
}

func TestRun_Invalid(t *testing.T) {
	s := memory.New(nil)
	defer s.Close()
	ctx := context.Background()
	nop := func(context.Context, eventstore.Event) error { return nil }
	for _, c := range []struct {
		name string
		run  func() error
	}{
		{"EmptyName", func() error { return projection.Run(ctx, s, s, projection.Projection{Handle: nop}, nil) }},
		{"NilHandle", func() error { return projection.Run(ctx, s, s, projection.Projection{Name: "x"}, nil) }},
		{"RunAll/NilHandle", func() error {
			return projection.RunAll(ctx, s, s, []projection.Projection{{Name: "x", Handle: nop}, {Name: "y"}}, nil)
		}},
		{"RunAll/SameName", func() error {
			return projection.RunAll(ctx, s, s, []projection.Projection{{Name: "x", Handle: nop}, {Name: "x", Handle: nop}}, nil)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := c.run(); !errors.Is(err, projection.ErrInvalidProjection) {
				t.Fatalf("got %v, want an error matching ErrInvalidProjection", err)
			}
		})
	}
	// A name no checkpoint store accepts fails with the store's error.
	err := projection.Run(ctx, s, s, projection.Projection{Name: "a\x00b", Handle: nop}, nil)
	if !errors.Is(err, eventstore.ErrInvalidCheckpoint) {
		t.Fatalf("Run with a NUL in the name = %v, want ErrInvalidCheckpoint", err)
	}
}

func TestRun_StoreClosed(t *testing.T) {
	s := memory.New(nil)
	appendN(t, s, 3, "Happened")
	m := &model{}
	stop, done := start(t, s, projection.Projection{Name: "closed", Handle: m.handler("a")}, fast())
	eventually(t, "3 events are handled", func() bool { return m.count() >= 3 })
	s.Close()
	select {
	case <-done:
		if err := stop(); !errors.Is(err, eventstore.ErrClosed) {
			t.Fatalf("Run after Close = %v, want ErrClosed", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Run did not return after the store closed")
	}
}

// slowSubscribe delays each event its store's Subscribe yields, as a
// subscription reading its next page does.
type slowSubscribe struct{ store }

func (s slowSubscribe) Subscribe(ctx context.Context, after uint64, f eventstore.Filter) iter.Seq2[eventstore.Event, error] {
	return func(yield func(eventstore.Event, error) bool) {
		for e, err := range s.store.Subscribe(ctx, after, f) {
			time.Sleep(3 * time.Millisecond)
			if !yield(e, err) {
				return
			}
		}
	}
}

// TestRun_CheckpointNeverPassesUnhandled saves often, with events the
// filter skips between selected ones and an idle interval shorter than the
// wait for the subscription's next event, so that the checkpoint's move
// over skipped events races with selected events not yet yielded: no saved
// checkpoint may pass a selected event not yet handled, and checkpoints
// never move back.
func TestRun_CheckpointNeverPassesUnhandled(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		s, _ := b.open(t)
		ctx := context.Background()
		var selected []uint64
		for i := range 120 {
			typ := "Other"
			if i%3 == 0 {
				typ = "Selected"
			}
			e, _ := eventstore.NewEvent("agg", typ, i)
			stored, err := s.Append(ctx, e)
			if err != nil {
				t.Fatal(err)
			}
			if typ == "Selected" {
				selected = append(selected, stored[0].Position)
			}
		}
		handled := map[uint64]bool{}
		var saves []uint64
		var bad []string
		p := projection.Projection{Name: "racy", Filter: eventstore.Filter{Types: []string{"Selected"}},
			Handle: func(_ context.Context, e eventstore.Event) error {
				handled[e.Position] = true
				return nil
			}}
		opts := &projection.Options{BatchSize: 1000, IdleInterval: time.Millisecond, Progress: func(pr projection.Progress) {
			if len(saves) > 0 && pr.Checkpoint < saves[len(saves)-1] {
				bad = append(bad, fmt.Sprintf("checkpoint moved back from %d to %d", saves[len(saves)-1], pr.Checkpoint))
			}
			saves = append(saves, pr.Checkpoint)
			for _, sp := range selected {
				if sp <= pr.Checkpoint && !handled[sp] {
					bad = append(bad, fmt.Sprintf("checkpoint %d saved before selected event %d was handled", pr.Checkpoint, sp))
					break
				}
			}
		}}
		stop, _ := start(t, slowSubscribe{s}, p, opts)
		eventually(t, "the checkpoint reaches the head", func() bool { return checkpoint(t, s, "racy") == 120 })
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		// Progress runs on Run's goroutine, which has returned.
		if len(bad) > 0 {
			t.Fatalf("%d bad saves, first: %s (saves %v)", len(bad), bad[0], saves)
		}
		if len(handled) != len(selected) {
			t.Fatalf("handled %d selected events, want %d", len(handled), len(selected))
		}
	})
}
