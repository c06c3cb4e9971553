package bolt

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"
)

// filePageSize returns the page size of the bbolt file at path.
func filePageSize(t *testing.T, path string) int {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	require.NoError(t, err)
	defer db.Close()
	return db.Info().PageSize
}

// TestOpen_PageSize: a new file gets Options.PageSize, an existing one
// keeps its own, and a page size bbolt cannot use writes nothing.
func TestOpen_PageSize(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for _, bad := range []int{-1, 512, 3000, 1 << 17} {
		path := filepath.Join(dir, "bad.db")
		_, err := Open(path, &Options{PageSize: bad})
		require.ErrorIs(t, err, ErrInvalidOptions, "PageSize %d", bad)
		_, err = os.Stat(path)
		require.ErrorIs(t, err, os.ErrNotExist, "PageSize %d made a file", bad)
	}

	// The bounds are sizes bbolt can use.
	for _, ps := range []int{1024, 65536} {
		path := filepath.Join(dir, fmt.Sprintf("bound-%d.db", ps))
		s, err := Open(path, &Options{PageSize: ps})
		require.NoError(t, err, "PageSize %d", ps)
		appendN(t, s, 20, 300)
		require.NoError(t, s.Check(ctx))
		require.NoError(t, s.Close())
		require.Equal(t, ps, filePageSize(t, path))
	}

	path := filepath.Join(dir, "events.db")
	s, err := Open(path, &Options{PageSize: 8192})
	require.NoError(t, err)
	appendN(t, s, 50, 300)
	require.NoError(t, s.Close())
	require.Equal(t, 8192, filePageSize(t, path))

	s, err = Open(path, &Options{PageSize: 16384})
	require.NoError(t, err)
	appendN(t, s, 50, 300)
	require.NoError(t, s.Check(ctx))
	require.NoError(t, s.Close())
	require.Equal(t, 8192, filePageSize(t, path), "an existing file changed its page size")
}

// TestWAL_RecoveryOtherPageSize replays the log of a killed store whose
// pages are not the system's size: recovery writes the base's meta pages
// at offsets of the file's page size.
func TestWAL_RecoveryOtherPageSize(t *testing.T) {
	requireWAL(t)
	for _, ps := range []int{2048, 16384} {
		path := filepath.Join(t.TempDir(), "events.db")
		s, err := Open(path, &Options{PageSize: ps})
		require.NoError(t, err)
		appendN(t, s, 40, 200)
		require.NoError(t, s.SaveCheckpoint(context.Background(), "c", 1)) // a checkpoint: a new base
		appendN(t, s, 3, 0)
		appendN(t, s, 5, 0)
		dst := crashCopy(t, path, t.TempDir())
		require.NoError(t, s.Close())
		requireEvents(t, dst, 48, "recovered")
		require.Equal(t, ps, filePageSize(t, dst))
	}
}
