package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"
	bbolt "go.etcd.io/bbolt"

	"github.com/eventstore-go/eventstore/bolt"
)

// compactTxSize is how many bytes of keys and values compact copies per
// write transaction of the new file.
const compactTxSize = 64 << 20

func newCompactCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "compact SRC DST",
		Short: "Rewrite a bolt file into a fresh, smaller one, and check it",
		Long: `compact copies every bucket of the bolt file SRC (events, indexes,
snapshots, checkpoints, read models) into a new file DST, which holds no free
pages and fuller leaves, and so is smaller. DST is in the file format this
version writes: a file of an older format gets its event records rewritten
(format 3 stores metadata values that are UUIDs in 16 bytes instead of 38).
DST must not exist; it is written
under a temporary name, synced, checked as verify checks a store, and only
then renamed to DST. SRC is opened read-only and left as it is: replace it
with DST yourself, while no application has it open.`,
		Args: args(2, "SRC DST"),
		RunE: func(c *cobra.Command, a []string) error {
			src, dst := a[0], a[1]
			if isPostgres(src) || isPostgres(dst) {
				return usagef("compact rewrites bolt files; PostgreSQL has VACUUM FULL")
			}
			if _, err := os.Stat(dst); err == nil {
				return fmt.Errorf("%s exists: compact writes a new file, give a path that does not exist", dst)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			ctx := c.Context()
			s, err := openStore(ctx, g, src, readOnly) // vets the file, holds its shared lock
			if err != nil {
				return err
			}
			defer s.Close()
			out, err := createAtomic(dst)
			if err != nil {
				return err
			}
			defer out.abort()
			tmp := out.Name()
			if err := out.Close(); err != nil {
				return err
			}
			stopSpin := spin(g, "compact")
			err = s.boltViewDB(g.timeout, func(from *bbolt.DB) error {
				// The copy keeps the page size of the file (see bolt.Options.PageSize).
				to, err := bbolt.Open(tmp, 0o600, &bbolt.Options{NoSync: true, Timeout: g.timeout, PageSize: from.Info().PageSize})
				if err != nil {
					return err
				}
				if err := ctx.Err(); err != nil {
					_ = to.Close()
					return err
				}
				err = bolt.Compact(ctx, to, from, compactTxSize)
				if err == nil {
					err = to.Sync()
				}
				if cerr := to.Close(); err == nil {
					err = cerr
				}
				return err
			})
			stopSpin()
			if err != nil {
				return fmt.Errorf("compact %s: %w", src, err)
			}
			if err := s.Close(); err != nil {
				return err
			}
			stopSpin = spin(g, "check")
			err = checkCopy(ctx, g, tmp, "compacted file")
			stopSpin()
			if err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			f, err := os.OpenFile(tmp, os.O_RDWR, 0)
			if err != nil {
				return err
			}
			out.File = f
			if err := out.commit(); err != nil {
				return err
			}
			before, _ := os.Stat(src)
			after, err := os.Stat(dst)
			if err != nil {
				return err
			}
			if g.json {
				return writeJSON(g.stdout, struct {
					Src    string `json:"src"`
					Dst    string `json:"dst"`
					Before int64  `json:"src_bytes"`
					After  int64  `json:"dst_bytes"`
				}{src, dst, before.Size(), after.Size()})
			}
			fmt.Fprintf(g.stdout, "%s (%s) compacted to %s (%s), checked\n", src, humanBytes(before.Size()), dst, humanBytes(after.Size()))
			return nil
		},
	}
}
