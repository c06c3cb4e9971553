package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/bolt"
)

func newBackupCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "backup STORE FILE",
		Short: "A consistent copy of a bolt file, checked",
		Long: `backup copies a bolt file to FILE: a consistent copy, written under a
temporary name, synced, renamed to FILE when complete, and then checked as
verify checks a store (exit status 1 if the copy, and so the source, has
problems).

It opens STORE read-only, so it fails while an application has the file open:
an application takes hot backups itself, while it appends, with
(*bolt.Store).Backup(ctx, w). For PostgreSQL use pg_dump --schema.`,
		Args: args(2, "STORE FILE"),
		RunE: func(c *cobra.Command, a []string) error {
			if isPostgres(a[0]) {
				return usagef("backup copies bolt files; for PostgreSQL use pg_dump --schema=%s, or 'eventstore export'", g.schema)
			}
			ctx := c.Context()
			s, err := openStore(ctx, g, a[0], readOnly)
			if err != nil {
				return err
			}
			defer s.Close()
			fi, err := os.Stat(a[0])
			if err != nil {
				return err
			}
			out, err := createAtomic(a[1])
			if err != nil {
				return err
			}
			defer out.abort()
			bar := newProgress(g, fi.Size(), "backup", true)
			n, err := s.bolt.Backup(ctx, progressWriter{w: out, p: bar})
			bar.done()
			if err != nil {
				return err
			}
			if err := out.commit(); err != nil {
				return err
			}
			if err := s.Close(); err != nil {
				return err
			}
			stopSpin := spin(g, "check")
			err = checkCopy(ctx, g, a[1], "backup")
			stopSpin()
			if err != nil {
				return err
			}
			if g.json {
				return writeJSON(g.stdout, struct {
					Store  string `json:"store"`
					Backup string `json:"backup"`
					Bytes  int64  `json:"bytes"`
				}{a[0], a[1], n})
			}
			fmt.Fprintf(g.stderr, "backup of %s written to %s (%s) and checked\n", a[0], a[1], humanBytes(n))
			return nil
		},
	}
}

// checkCopy opens a copy that backup or compact wrote and checks it.
func checkCopy(ctx context.Context, g *globals, path, what string) error {
	c, err := bolt.Open(path, &bolt.Options{ReadOnly: true, Timeout: g.timeout})
	if err == nil {
		err = c.Check(ctx)
		if cerr := c.Close(); err == nil {
			err = cerr
		}
	}
	if err == nil {
		return nil
	}
	if errors.Is(err, eventstore.ErrCorrupt) || errors.Is(err, eventstore.ErrUnknownFormat) {
		fmt.Fprintf(g.stdout, "%s: the %s fails its check: %v\n", path, what, err)
		return &problemsError{n: 1, what: what + " " + path}
	}
	return err
}
