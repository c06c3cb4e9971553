package bolt

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"

	"github.com/eventstore-go/eventstore"
)

// TestStore_ReadPagesCapBytes stores 20 events with 1 MiB payloads and
// reads the first page of every kind of read: a page holds at most
// maxPageBytes of records (so 16 of these events, not ReadPageSize = 512),
// and the reads still yield every event across pages.
func TestStore_ReadPagesCapBytes(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "events.db"), &Options{UnsafeNoSync: true})
	require.NoError(t, err)
	defer s.Close()
	payload := []byte(`"` + strings.Repeat("x", eventstore.DefaultMaxPayloadSize-2) + `"`)
	const n = 20
	for range n / 5 {
		batch := make([]eventstore.Event, 5)
		for i := range batch {
			batch[i] = eventstore.Event{AggregateID: "big", Type: "Big", Payload: payload}
		}
		_, err := s.Append(ctx, batch...)
		require.NoError(t, err)
	}

	for name, start := range map[string]func() pageFunc{
		"ReadAggregate":       aggregatePages("big", 0),
		"ReadAll":             allPages(0),
		"ReadType":            typePages("Big", 0),
		"ReadTime":            timePages("", time.Time{}, time.Time{}),
		"ReadTimeOfAggregate": timePages("big", time.Time{}, time.Time{}),
	} {
		t.Run(name, func(t *testing.T) {
			next := start()
			var d decoder
			var page []eventstore.Event
			more := false
			for len(page) == 0 { // ReadTime of one aggregate scans first
				require.NoError(t, s.view(func(tx *bbolt.Tx) (err error) {
					page, more, err = next(tx, &d, page, s.pageSize)
					return err
				}))
			}
			require.Equal(t, DefaultReadPageSize, s.pageSize)
			require.Equal(t, maxPageBytes/len(payload), len(page), "events in the first page")
			require.True(t, more)
		})
	}

	for name, read := range map[string]func() func(func(eventstore.Event, error) bool){
		"ReadAggregate": func() func(func(eventstore.Event, error) bool) { return s.ReadAggregate(ctx, "big", 0) },
		"ReadAll":       func() func(func(eventstore.Event, error) bool) { return s.ReadAll(ctx, 0) },
		"ReadType":      func() func(func(eventstore.Event, error) bool) { return s.ReadType(ctx, "Big", 0) },
		"ReadTime":      func() func(func(eventstore.Event, error) bool) { return s.ReadTime(ctx, "", time.Time{}, time.Time{}) },
		"ReadTimeOfAggregate": func() func(func(eventstore.Event, error) bool) {
			return s.ReadTime(ctx, "big", time.Time{}, time.Time{})
		},
	} {
		got, err := eventstore.Collect(read())
		require.NoError(t, err, name)
		require.Equal(t, n, len(got), name)
		for i, e := range got {
			require.Equal(t, uint64(i+1), e.Position, name)
		}
	}
}
