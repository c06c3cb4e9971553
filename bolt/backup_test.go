package bolt_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/bolt"
)

// TestStore_BackupWhileAppending takes backups while 8 goroutines append:
// each copy opens, passes Check, and holds a prefix of the log (positions
// 1 to its head, each the event the live store has there).
func TestStore_BackupWhileAppending(t *testing.T) {
	ctx := context.Background()
	s := MustOpen(t, nil)
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				e, _ := eventstore.NewEvent(fmt.Sprintf("agg-%d", w), "Appended", map[string]int{"i": i})
				if _, err := s.Append(ctx, e, e2(t, w, i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var heads []uint64
	for i := range 5 {
		path := filepath.Join(t.TempDir(), fmt.Sprintf("backup-%d.db", i))
		f, err := os.Create(path)
		require.NoError(t, err)
		n, err := s.Backup(ctx, f)
		require.NoError(t, err)
		require.NoError(t, f.Close())
		fi, err := os.Stat(path)
		require.NoError(t, err)
		require.Equal(t, fi.Size(), n)

		c, err := bolt.Open(path, &bolt.Options{ReadOnly: true})
		require.NoError(t, err)
		require.NoError(t, c.Check(ctx), "backup %d", i)
		head, err := c.Head(ctx)
		require.NoError(t, err)
		got, err := eventstore.Collect(c.ReadAll(ctx, 0))
		require.NoError(t, err)
		require.NoError(t, c.Close())
		require.Len(t, got, int(head))
		live, err := eventstore.Collect(s.ReadAll(ctx, 0))
		require.NoError(t, err)
		require.GreaterOrEqual(t, len(live), len(got))
		for j := range got {
			require.Equal(t, uint64(j+1), got[j].Position)
			require.Equal(t, live[j], got[j])
		}
		heads = append(heads, head)
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	require.Positive(t, heads[len(heads)-1], "no backup saw an append")
}

// e2 is the second event of one append, so that commits hold several
// events.
func e2(t *testing.T, w, i int) eventstore.Event {
	e, err := eventstore.NewEvent(fmt.Sprintf("agg-%d", w), "AppendedToo", map[string]int{"i": i})
	if err != nil {
		t.Error(err)
	}
	return e
}

func TestStore_BackupStopsWithCtx(t *testing.T) {
	s := MustOpen(t, &bolt.Options{UnsafeNoSync: true})
	e, _ := eventstore.NewEvent("a", "T", map[string]string{"k": "v"})
	_, err := s.Append(context.Background(), e)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = s.Backup(ctx, &bytes.Buffer{})
	require.ErrorIs(t, err, context.Canceled)

	ctx, cancel = context.WithCancel(context.Background())
	w := &cancelAfter{cancel: cancel}
	_, err = s.Backup(ctx, w)
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, 1, w.writes, "Backup wrote on after ctx ended")
}

// cancelAfter cancels its ctx during the first write.
type cancelAfter struct {
	cancel context.CancelFunc
	writes int
}

func (c *cancelAfter) Write(p []byte) (int, error) {
	c.writes++
	c.cancel()
	return len(p), nil
}

func TestStore_BackupAfterClose(t *testing.T) {
	s, err := bolt.Open(filepath.Join(t.TempDir(), "events.db"), nil)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	_, err = s.Backup(context.Background(), &bytes.Buffer{})
	require.True(t, errors.Is(err, eventstore.ErrClosed), "got %v", err)
}
