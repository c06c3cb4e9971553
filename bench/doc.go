// Package bench measures the event store's backends against each other and
// against raw bbolt doing the same work with no event-store layer.
//
// The benchmarks live in this package's tests; the package itself has no
// API. It is a module of its own (bench/go.mod, which replaces the library
// with ../), so that SQLite and the plotting library it uses stay out of the
// library's dependencies. Run them from bench/ with
//
//	go test -run '^$' -bench . -benchmem .
//
// or run `make bench`, which runs them through bench/cmd/results and writes
// bench/RESULTS.md with its charts (throughput.png, latency.png), and `make
// bench-compare OLD=ref NEW=ref`, which runs bench/compare.sh and compares
// two git refs with benchstat. `make bench` runs every benchmark once and
// the ones the aims compare four more times, and reports medians. The first
// run builds the replay fixtures (minutes); later runs copy them from the
// fixture cache (cache_test.go).
//
// # Workloads
//
// Names are stable, so that benchstat can compare runs:
//
//	BenchmarkAppend/{backend}/batch={1,10,100}    one goroutine, N events per Append
//	BenchmarkAppend/{backend}/parallel={8,64}     N goroutines, 1 event per Append, distinct aggregates
//	BenchmarkReplay/{backend}/aggregate=100       read one 100-event aggregate
//	BenchmarkReplay/{backend}/aggregate=100k      read the 100,000-event aggregate
//	BenchmarkReplay/{backend}/aggregate=100k-legacy  the same in the old fixture (see legacyShape)
//	BenchmarkReplay/{backend}/all                 ReadAll over the whole fixture
//	BenchmarkReplay/{backend}/type                ReadType of one type (a tenth of the events)
//	BenchmarkReplay/{backend}/time                ReadTime of a window holding a tenth of the events
//	BenchmarkSubscribe/{backend}/latency          Append's return to a live subscriber's yield (percentiles)
//	BenchmarkSubscribe/{backend}/catchup          Subscribe from 0 over the whole fixture (compare .../all)
//	BenchmarkProject/{bolt,postgres}/exactly-once a read model of 100,000 events in the store's own transactions
//
// Backends: memory, bolt (durable), bolt-nosync (Options.UnsafeNoSync),
// postgres (skipped when no server answers at EVENTSTORE_POSTGRES_DSN or
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable), sqlite (the
// event store a desktop developer would write on SQLite instead: see
// sqliteStore), and rawbolt: the
// baseline, plain bbolt writing the same buckets, keys and records as
// package bolt, one Update per append (DB.Batch for the parallel cases),
// reading in one View; rawbolt-nosync, the same without fsync, which
// bolt-nosync is compared with; and rawbolt-grouped, the ceiling of group
// commit: only the parallel rows, where one goroutine commits the writers'
// appends in rounds of N per Update, with none of the waiting, handoffs
// or checks of a real group commit. Replay has no nosync rows: reads do
// not sync.
//
// Every benchmark reports, besides ns/op, B/op and allocs/op:
//
//	events/s      events appended or read per second
//	ns/event      the same, inverted
//	allocs/event  heap allocations per event (runtime.MemStats.Mallocs)
//	disk-B/event  bytes of the bbolt or SQLite file (or PostgreSQL tables and indexes) per stored event
//
// and Append/batch=1 and Replay/aggregate=100 the percentiles of each
// operation's time: p50-ns, p90-ns, p99-ns, p99.9-ns.
//
// # Events
//
// The events are what an application's commands append (gen): calls of 1
// to 3 events, each call with its own correlation, causation and user IDs,
// JSON payloads of 100 B to 2 KiB, log-normal with a median of 250 B.
//
// A -bench pattern is matched level by level, and a level matches by
// substring: "Append/bolt/" also runs bolt-nosync and rawbolt; anchor it,
// as in "Append/^bolt$/batch=1$".
//
// # Profiling
//
// The fixtures are loaded in the same process, so focus a profile on the
// timed reads or appends:
//
//	go test -run '^$' -bench 'Replay/^bolt$/all$' -benchtime 5x -cpuprofile cpu.out .
//	go tool pprof -top -cum -focus countEvents bench.test cpu.out
//	go test -run '^$' -bench 'Append/^bolt-nosync$/batch=100$' -benchtime 3s -cpuprofile cpu.out .
//	go tool pprof -top -cum -focus 'bolt.*Append' bench.test cpu.out
//
// Durable appends wait on fdatasync; count the syscalls with
// strace -f -c -e trace=fdatasync,pwrite64 on the compiled test binary.
//
// The replay fixture (1,000,000 events: 9,000 aggregates of 100 events and
// one of 100,000, on every backend; PostgreSQL's loaded with COPY) is built
// once per backend outside the timer, or copied from the fixture cache,
// and removed when the process ends. Nothing heavy happens unless a
// benchmark runs, so `go test .` stays fast.
package bench
