package bolt

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"

	"github.com/eventstore-go/eventstore"
)

// TestStore_BackupSkipsCommitInFlight holds a commit after bbolt wrote it
// but before its (simulated) fsync fails, and takes a backup meanwhile: the
// backup must not copy the events of that commit, which the store reports
// as of unknown outcome. It waits for the commit and then refuses, as
// writes do, with ErrNeedsReopen.
func TestStore_BackupSkipsCommitInFlight(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "events.db"), &Options{UnsafeNoSync: true})
	require.NoError(t, err)
	defer s.Close()
	_, err = s.Append(ctx, eventstore.Event{AggregateID: "a", Type: "T", Payload: []byte(`1`)})
	require.NoError(t, err)

	inCommit, release := make(chan struct{}), make(chan struct{})
	s.commit = func(tx *bbolt.Tx) error {
		if err := tx.Commit(); err != nil { // on the file: readers see it
			return err
		}
		close(inCommit)
		<-release
		return errInjected // its fsync "failed"
	}
	appended := make(chan error, 1)
	go func() {
		_, err := s.Append(ctx, eventstore.Event{AggregateID: "a", Type: "T", Payload: []byte(`2`)})
		appended <- err
	}()
	<-inCommit

	type result struct {
		n   int64
		err error
		buf []byte
	}
	done := make(chan result, 1)
	go func() {
		var buf bytes.Buffer
		n, err := s.Backup(ctx, &buf)
		done <- result{n, err, buf.Bytes()}
	}()
	select {
	case r := <-done:
		// Without waiting for the commit, the backup holds its events.
		close(release)
		<-appended
		path := filepath.Join(t.TempDir(), "copy.db")
		require.NoError(t, writeFile(path, r.buf))
		c, err := Open(path, &Options{ReadOnly: true})
		require.NoError(t, err)
		head, _ := c.Head(ctx)
		_ = c.Close()
		t.Fatalf("Backup returned (%d bytes, err %v, a copy with head %d) while a commit was in flight", r.n, r.err, head)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	require.ErrorIs(t, <-appended, eventstore.ErrUnknownOutcome)
	r := <-done
	require.ErrorIs(t, r.err, eventstore.ErrNeedsReopen)
	require.Zero(t, r.n)
}

func writeFile(path string, b []byte) error { return os.WriteFile(path, b, 0o600) }
