package bench

import (
	"context"
	"fmt"
	"iter"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/eventstore-go/eventstore"
)

// target is what the benchmarks drive: an eventstore.Store, or the raw
// bbolt baseline, which has the same methods and none of the layer.
type target interface {
	Append(ctx context.Context, events ...eventstore.Event) ([]eventstore.Event, error)
	ReadAggregate(ctx context.Context, aggregateID string, afterVersion uint64) iter.Seq2[eventstore.Event, error]
	ReadAll(ctx context.Context, afterPosition uint64) iter.Seq2[eventstore.Event, error]
	ReadType(ctx context.Context, eventType string, afterPosition uint64) iter.Seq2[eventstore.Event, error]
	ReadTime(ctx context.Context, aggregateID string, start, end time.Time) iter.Seq2[eventstore.Event, error]
	Close() error
}

// handle is an open store of some backend.
type handle struct {
	target

	// size returns the bytes the store holds on disk. It is called after
	// Close (a bbolt file can only be measured closed), or on an open
	// PostgreSQL store; nil means the backend has no disk.
	size func() (int64, error)

	// cleanup removes what the store left (a file, a schema). It is called
	// after Close and size.
	cleanup func()

	// schema is a PostgreSQL store's schema.
	schema string
}

// backend opens stores of one kind: one column of the results table.
type backend struct {
	name string

	// open returns an empty store. concurrent says that many goroutines will
	// append to it (the baseline then uses DB.Batch); forFixture that it
	// will be loaded with a replay fixture (and may skip fsync for that).
	open func(tb testing.TB, concurrent, forFixture bool) *handle

	// load loads a replay fixture's calls into a store open returned;
	// nil means one Append per call, in order (appendCalls).
	load func(tb testing.TB, h *handle, calls iter.Seq[[]eventstore.Event]) error

	// file, when set, says the backend keeps a store in one file, which
	// the fixture cache keeps (see cache_test.go) and the replay
	// benchmarks read opened anew with the default (durable) options.
	file *fileBackend

	// fixtureCache, when set, keeps the backend's fixtures across runs in
	// a way of its own (PostgreSQL: a schema per fixture).
	fixtureCache *serverCache

	// append and replay report whether the backend has rows in
	// BenchmarkAppend and BenchmarkReplay.
	append, replay bool

	// grouped says the backend has only the parallel rows of
	// BenchmarkAppend, run by benchAppendGrouped: a raw store's ceiling.
	grouped bool

	// onHeap says the backend keeps its data on the Go heap. Its replay
	// fixture is dropped as soon as its benchmarks are done: a live heap of
	// a million events would tax every later benchmark with garbage
	// collection work.
	onHeap bool
}

// workdir holds the files of this process's benchmarks; TestMain removes it.
var workdir string

// cleanups run when the process ends, last first: they close the fixtures.
var (
	cleanupMu sync.Mutex
	cleanups  []func()
)

func atExit(f func()) {
	cleanupMu.Lock()
	defer cleanupMu.Unlock()
	cleanups = append(cleanups, f)
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "eventstore-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	workdir = dir
	code := m.Run()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	if err := os.RemoveAll(dir); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
	}
	os.Exit(code)
}

// The events the benchmarks append: those of the gen, drawn once. event
// takes the payload and type of the event numbered seq and the metadata
// (correlation, causation and user IDs) of the call numbered call, so
// that the events of one call share their metadata and calls differ, as
// an application's commands do.
var (
	eventTypes = []string{
		"AccountOpened", "MoneyDeposited", "MoneyWithdrawn", "TransferSent", "TransferReceived",
		"FeeCharged", "InterestPaid", "AddressChanged", "StatementIssued", "LimitRaised",
	}
	payloads, metadatas = func() ([][]byte, []map[string]string) {
		g := newGen(1)
		p := make([][]byte, 4096)
		for i := range p {
			p[i] = g.payload(g.payloadSize())
		}
		m := make([]map[string]string, 1024)
		for i := range m {
			m[i] = g.next("x", 0, 1, fixtureBase)[0].Metadata
		}
		return p, m
	}()
)

// event returns the event numbered seq (from 1) of the Append call numbered
// call, of aggregateID at version, without ID or timestamp: the store
// assigns them.
func event(aggregateID string, version uint64, seq, call int) eventstore.Event {
	return eventstore.Event{
		AggregateID: aggregateID,
		Type:        eventTypes[seq%len(eventTypes)],
		Payload:     payloads[seq%len(payloads)],
		Metadata:    metadatas[call%len(metadatas)],
		Version:     version,
	}
}

// The events of the old replay fixture, kept for its labelled row
// (legacyShape): a JSON payload of about 130 bytes and one metadata entry,
// a correlation ID shared by the 100 events of each call.
var (
	legacyPayloads = func() [][]byte {
		p := make([][]byte, 16)
		for i := range p {
			p[i] = fmt.Appendf(nil, `{"account":"acct-%06d","amount":%d,"currency":"EUR","reference":"INV-2026-%06d","note":"monthly payment for services rendered"}`,
				i*7919, 1000+i*37, i*104729)
		}
		return p
	}()
	legacyMetadatas = func() []map[string]string {
		m := make([]map[string]string, 1024)
		for i := range m {
			m[i] = map[string]string{"correlation_id": fmt.Sprintf("0193a8e2-7c4b-7def-8a12-%012x", i*2654435761)}
		}
		return m
	}()
)

// legacyEvent is event with the old fixture's payloads and metadata.
func legacyEvent(aggregateID string, version uint64, seq, call int) eventstore.Event {
	return eventstore.Event{
		AggregateID: aggregateID,
		Type:        eventTypes[seq%len(eventTypes)],
		Payload:     legacyPayloads[seq%len(legacyPayloads)],
		Metadata:    legacyMetadatas[call%len(legacyMetadatas)],
		Version:     version,
	}
}

// meter measures one benchmark run: time (the benchmark's timer) and heap
// allocations, reported per event.
type meter struct {
	b  *testing.B
	m0 runtime.MemStats
}

// startMeter ends a benchmark's setup: it collects the setup's garbage and
// resets the timer.
func startMeter(b *testing.B) *meter {
	b.ReportAllocs()
	m := &meter{b: b}
	runtime.GC()
	runtime.ReadMemStats(&m.m0)
	b.ResetTimer()
	return m
}

// stop stops the timer and reports events/s, ns/event and allocs/event for
// events events.
func (m *meter) stop(events int) {
	m.b.StopTimer()
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	if events <= 0 {
		return
	}
	ns := float64(m.b.Elapsed().Nanoseconds())
	m.b.ReportMetric(float64(events)/ns*1e9, "events/s")
	m.b.ReportMetric(ns/float64(events), "ns/event")
	m.b.ReportMetric(float64(m1.Mallocs-m.m0.Mallocs)/float64(events), "allocs/event")
}

// reportDisk reports disk-B/event: size bytes holding events events.
func reportDisk(b *testing.B, size int64, events int) {
	if events > 0 && size > 0 {
		b.ReportMetric(float64(size)/float64(events), "disk-B/event")
	}
}

// sink keeps the compiler from discarding what the benchmarks read.
var sink int
