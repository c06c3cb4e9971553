package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/bolt"
)

// requireSameEvents compares every field but Position, which the
// destination assigns.
func requireSameEvents(t *testing.T, want, got []eventstore.Event) {
	t.Helper()
	require.Len(t, got, len(want))
	for i := range want {
		w, g := want[i], got[i]
		w.Position, g.Position = 0, 0
		require.Equal(t, w, g, "event %d", i)
		require.Equal(t, string(want[i].Payload), string(got[i].Payload))
	}
}

func readAll(t *testing.T, path string) []eventstore.Event {
	t.Helper()
	s, err := bolt.Open(path, &bolt.Options{ReadOnly: true})
	require.NoError(t, err)
	defer s.Close()
	events, err := eventstore.Collect(s.ReadAll(context.Background(), 0))
	require.NoError(t, err)
	return events
}

func TestExportImport_Bolt(t *testing.T) {
	for _, name := range []string{"events.ndjson", "events.ndjson.gz"} {
		t.Run(name, func(t *testing.T) {
			src, events := makeBolt(t)
			file := filepath.Join(t.TempDir(), name)
			ok(t, "export", "-o", file, src)

			dst := filepath.Join(t.TempDir(), "imported.db")
			require.Equal(t, "7 events read, 7 imported, 0 already stored\n", ok(t, "import", dst, file))
			requireSameEvents(t, events, readAll(t, dst))
			// A rerun adds nothing.
			require.Equal(t, "7 events read, 0 imported, 7 already stored\n", ok(t, "import", dst, file))
			require.Len(t, readAll(t, dst), 7)
			// Into a store that holds other events first: positions differ,
			// everything else is kept.
			other := filepath.Join(t.TempDir(), "other.db")
			s, err := bolt.Open(other, nil)
			require.NoError(t, err)
			_, err = s.Append(context.Background(), eventstore.Event{AggregateID: "x", Type: "X", Payload: []byte(`1`)})
			require.NoError(t, err)
			require.NoError(t, s.Close())
			objs := jsonLines(t, ok(t, "import", "--json", other, file))
			require.Equal(t, []map[string]any{{"events": 7.0, "imported": 7.0, "skipped": 0.0}}, objs)
			got := readAll(t, other)
			require.EqualValues(t, 8, got[7].Position)
			requireSameEvents(t, events, got[1:])
		})
	}
}

func TestImport_BadInput(t *testing.T) {
	dir := t.TempDir()
	dst := filepath.Join(dir, "dst.db")
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	header := `{"format":"eventstore-ndjson","version":1,"head":1}` + "\n"
	for _, tt := range []struct{ name, content, want string }{
		{"noheader", `{"id":"x"}` + "\n", "not an eventstore export"},
		{"version", `{"format":"eventstore-ndjson","version":2}` + "\n", "version 2"},
		{"badline", header + "{not json\n", "line 2"},
		{"badevent", header + `{"id":"not-a-uuid","aggregate_id":"a","type":"T","version":1,"position":1,"timestamp":"2024-05-01T12:00:00Z","payload":{}}` + "\n", "invalid event"},
		{"unknownfield", header + `{"id":"x","extra":1}` + "\n", "unknown field"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := cli(t, "import", dst, write(tt.name, tt.content))
			require.Equal(t, 2, r.code, r.stderr)
			require.Contains(t, r.stderr, tt.want)
		})
	}
	// Nothing was written by the failed imports.
	if _, err := os.Stat(dst); err == nil {
		require.Empty(t, readAll(t, dst))
	}
}

func TestCopy_Bolt(t *testing.T) {
	src, events := makeBolt(t)
	dst := filepath.Join(t.TempDir(), "copy.db")
	out := ok(t, "copy", src, dst)
	require.Contains(t, out, "7 events copied, 0 already there")
	requireSameEvents(t, events, readAll(t, dst))
	objs := jsonLines(t, ok(t, "copy", "--json", src, dst))
	require.Equal(t, []map[string]any{{"copied": 0.0, "skipped": 0.0, "conflict_skipped": 0.0, "conflicts": []any{}, "checkpoint": 7.0}}, objs)
	require.Len(t, readAll(t, dst), 7)

	// A conflicting aggregate: stop (2), or skip and list it (1).
	other := filepath.Join(t.TempDir(), "other.db")
	s, err := bolt.Open(other, nil)
	require.NoError(t, err)
	_, err = s.Append(context.Background(), eventstore.Event{AggregateID: "order-1", Type: "Other", Payload: []byte(`1`)})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	r := cli(t, "copy", src, other)
	require.Equal(t, 2, r.code)
	require.Contains(t, r.stderr, "order-1")
	r = cli(t, "copy", "--on-conflict", "skip", src, other)
	require.Equal(t, 1, r.code, r.stderr)
	require.Contains(t, r.stdout, `conflict: eventstore: version conflict on aggregate "order-1"`)
	require.Len(t, readAll(t, other), 1+5)
}

// bigStore writes a store of n events, quickly.
func bigStore(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "big.db")
	s, err := bolt.Open(path, &bolt.Options{UnsafeNoSync: true})
	require.NoError(t, err)
	payload := []byte(`{"text":"` + strings.Repeat("lorem ipsum ", 40) + `"}`)
	batch := make([]eventstore.Event, 0, 1000)
	for i := 0; i < n; i += cap(batch) {
		batch = batch[:0]
		for j := range cap(batch) {
			batch = append(batch, eventstore.Event{AggregateID: "agg-" + string(rune('a'+(i/1000)%26)) + "-" + itoa(i/1000), Type: "T", Payload: payload, Version: uint64(j + 1)})
		}
		_, err := s.Append(context.Background(), batch...)
		require.NoError(t, err)
	}
	require.NoError(t, s.Close())
	return path
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestExport_Interrupted sends SIGINT to an export of a big store: it
// stops with exit status 130 and leaves no file, neither the target nor a
// temporary one.
func TestExport_Interrupted(t *testing.T) {
	src := bigStore(t, 200_000)
	dir := t.TempDir()
	out := filepath.Join(dir, "events.ndjson")
	cmd := exec.Command(binary, "export", "-o", out, src)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	// Wait until the export is under way: its temporary file exists and
	// grows.
	deadline := time.Now().Add(30 * time.Second)
	for {
		entries, _ := os.ReadDir(dir)
		if len(entries) == 1 {
			if fi, err := entries[0].Info(); err == nil && fi.Size() > 0 {
				require.True(t, strings.HasPrefix(entries[0].Name(), ".events.ndjson.tmp-"), entries[0].Name())
				break
			}
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatal("the export did not start writing")
		}
		time.Sleep(5 * time.Millisecond)
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	err := cmd.Wait()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "the export finished before SIGINT: make the store bigger")
	require.Equal(t, 130, ee.ExitCode(), stderr.String())
	require.Contains(t, stderr.String(), "interrupted")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries, "an interrupted export left a file")
}

// TestImport_InterruptedResumes interrupts an import with SIGINT (exit
// status 130), then reruns it: the rerun skips what the first run stored
// and the store ends with every event once.
func TestImport_InterruptedResumes(t *testing.T) {
	const n = 50_000
	src := bigStore(t, n)
	file := filepath.Join(t.TempDir(), "big.ndjson")
	ok(t, "export", "-o", file, src)
	dst := filepath.Join(t.TempDir(), "dst.db")

	cmd := exec.Command(binary, "import", "--batch", "50", dst, file)
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	// Wait until some batches are committed: the file holds more than
	// its first pages (its blocks, not its size, which bbolt sets ahead).
	deadline := time.Now().Add(60 * time.Second)
	for {
		if fi, err := os.Stat(dst); err == nil && fi.Sys().(*syscall.Stat_t).Blocks*512 > 1<<20 {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("the import did not get going: %s", stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	err := cmd.Wait()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "the import finished before SIGINT")
	require.Equal(t, 130, ee.ExitCode(), stderr.String())

	partial := len(readAll(t, dst))
	require.Positive(t, partial)
	require.Less(t, partial, n)
	out := ok(t, "import", dst, file)
	require.Equal(t, strconv.Itoa(n)+" events read, "+strconv.Itoa(n-partial)+" imported, "+strconv.Itoa(partial)+" already stored\n", out)
	got := readAll(t, dst)
	require.Len(t, got, n)
	want := readAll(t, src)
	requireSameEvents(t, want, got)
	require.Contains(t, ok(t, "verify", dst), ": ok")
}
