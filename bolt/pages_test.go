package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/eventstore-go/eventstore"
)

// buildFile makes a store of n events over many aggregates and types, with
// snapshots saved and some deleted (so that the freelist holds pages), and
// returns its path, closed.
func buildFile(tb testing.TB, n int) string {
	tb.Helper()
	ctx := context.Background()
	path := filepath.Join(tb.TempDir(), "events.db")
	s, err := Open(path, &Options{UnsafeNoSync: true})
	require.NoError(tb, err)
	for i := 0; i < n; i += 10 {
		batch := make([]eventstore.Event, 0, 10)
		for j := i; j < i+10 && j < n; j++ {
			batch = append(batch, eventstore.Event{
				AggregateID: fmt.Sprintf("agg-%d", (i/10)%37),
				Type:        fmt.Sprintf("Type%d", j%5),
				Payload:     []byte(fmt.Sprintf(`{"n":%d,"pad":"%0*d"}`, j, j%300, 0)),
				Metadata:    map[string]string{"user": fmt.Sprintf("u%d", j%3)},
			})
		}
		_, err := s.Append(ctx, batch...)
		require.NoError(tb, err)
		if i%200 == 0 {
			agg := fmt.Sprintf("agg-%d", i%37)
			require.NoError(tb, s.SaveSnapshot(ctx, eventstore.Snapshot{AggregateID: agg, Version: 1, State: make([]byte, 3000)}))
			if i%400 == 0 {
				require.NoError(tb, s.DeleteSnapshot(ctx, agg))
			}
		}
	}
	require.NoError(tb, s.Close())
	return path
}

// TestWalkFile_Valid walks files bbolt wrote: no complaint.
func TestWalkFile_Valid(t *testing.T) {
	for _, n := range []int{0, 1, 100, 3000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			path := buildFile(t, n)
			f, err := os.Open(path)
			require.NoError(t, err)
			defer f.Close()
			fi, err := f.Stat()
			require.NoError(t, err)
			fm, err := walkFile(context.Background(), f, fi.Size())
			require.NoError(t, err)
			t.Logf("%d events: %d pages, %d free", n, fm.meta.pgid, len(fm.free))
		})
	}
}

// FuzzWalkFile feeds damaged files to the page walker: it must return (an
// error or not), never panic, whatever the bytes. The seeds are real files.
func FuzzWalkFile(f *testing.F) {
	for _, n := range []int{0, 30} {
		raw, err := os.ReadFile(buildFile(f, n))
		require.NoError(f, err)
		f.Add(raw)
	}
	f.Add([]byte(`{"a":1}`))
	f.Add(make([]byte, 8192))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > 1<<20 {
			return
		}
		r := bytes.NewReader(raw)
		if _, err := walkFile(context.Background(), r, int64(len(raw))); err != nil {
			if !errors.Is(err, eventstore.ErrCorrupt) && !errors.Is(err, eventstore.ErrUnknownFormat) {
				t.Fatalf("error matching neither ErrCorrupt nor ErrUnknownFormat: %v", err)
			}
		}
		_ = validMeta(r, 4096)
	})
}
