package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/eventstore-go/eventstore"
	"github.com/eventstore-go/eventstore/replicate"
)

func newCopyCmd(g *globals) *cobra.Command {
	var (
		checkpoint, prefix, onConflict string
		batch                          int
	)
	c := &cobra.Command{
		Use:   "copy SRC DST",
		Short: "Copy the events of any store into any other, resumably",
		Long: `copy copies every event of SRC into DST (bolt files or PostgreSQL schemas,
in any combination) through replicate.Copy: IDs, versions, timestamps,
metadata, tags and payloads are kept; DST assigns its own positions. A DST
that does not exist is created.

It is resumable: DST keeps the last SRC position copied in a checkpoint
(--checkpoint, by default "copy:" and SRC), saved after each batch, so a
rerun after Ctrl-C or a crash continues where it stopped, and a rerun after
a complete copy adds only the events committed since.

An aggregate that DST already holds with other events is a conflict: copy
stops (--on-conflict stop, exit status 2), or, with --on-conflict skip, leaves
that aggregate out, copies the rest, lists the conflicts and exits with
status 1. A SQL schema given with --schema applies to both stores; give the
checkpoint a name of your own when SRC's name may change.`,
		Args: args(2, "SRC DST"),
		RunE: func(c *cobra.Command, a []string) error {
			var policy replicate.ConflictPolicy
			switch onConflict {
			case "stop":
				policy = replicate.Stop
			case "skip":
				policy = replicate.Skip
			default:
				return usagef("--on-conflict %q: stop or skip", onConflict)
			}
			ctx := c.Context()
			if checkpoint == "" {
				name := a[0]
				if isPostgres(name) {
					name = redact(name) + "#" + g.schema
				} else if abs, err := filepath.Abs(name); err == nil {
					name = abs
				}
				checkpoint = "copy:" + name
				if len(checkpoint) > eventstore.MaxNameLength {
					checkpoint = checkpoint[:eventstore.MaxNameLength]
				}
			}
			src, err := openStore(ctx, g, a[0], readOnly)
			if err != nil {
				return err
			}
			defer src.Close()
			dst, err := openStore(ctx, g, a[1], readWrite)
			if err != nil {
				return err
			}
			defer dst.Close()
			to, ok := dst.Store.(replicate.Destination)
			if !ok {
				return fmt.Errorf("%s: this store cannot be copied into", dst.name)
			}
			var bar *progress
			stats, err := replicate.Copy(ctx, src.Store, to, &replicate.Options{
				Checkpoint: checkpoint,
				Filter:     eventstore.Filter{AggregatePrefix: prefix},
				BatchSize:  batch,
				OnConflict: policy,
				Progress: func(p replicate.Progress) {
					if bar == nil {
						bar = newProgress(g, int64(p.Head-p.Start), "copy", false)
					}
					if bar != nil {
						_ = bar.bar.Set64(int64(p.Position - p.Start))
					}
				},
			})
			bar.done()
			if err != nil {
				return fmt.Errorf("copy %s to %s (%d events copied before; rerun to resume): %w", src.name, dst.name, stats.Copied, err)
			}
			if g.json {
				if err := writeJSON(g.stdout, struct {
					Copied          int64    `json:"copied"`
					Skipped         int64    `json:"skipped"`
					ConflictSkipped int64    `json:"conflict_skipped"`
					Conflicts       []string `json:"conflicts"`
					Checkpoint      uint64   `json:"checkpoint"`
				}{stats.Copied, stats.Skipped, stats.ConflictSkipped, conflictList(stats.Conflicts), stats.Checkpoint}); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(g.stdout, "%d events copied, %d already there; %s is at position %d of %s\n", stats.Copied, stats.Skipped, checkpoint, stats.Checkpoint, src.name)
				for _, c := range conflictList(stats.Conflicts) {
					fmt.Fprintf(g.stdout, "  conflict: %s\n", c)
				}
			}
			if len(stats.Conflicts) > 0 {
				return &problemsError{n: len(stats.Conflicts), what: fmt.Sprintf("copy: %d aggregates left out for conflicts (%d events)", len(stats.Conflicts), stats.ConflictSkipped)}
			}
			return nil
		},
	}
	fl := c.Flags()
	fl.StringVar(&checkpoint, "checkpoint", "", `the checkpoint in DST that remembers how far SRC was copied (default "copy:" + SRC)`)
	fl.StringVar(&prefix, "prefix", "", "copy only aggregates whose ID starts with these bytes")
	fl.StringVar(&onConflict, "on-conflict", "stop", "stop, or skip (leave out) aggregates that DST holds with other events")
	fl.IntVar(&batch, "batch", replicate.DefaultBatchSize, "events per Import")
	return c
}

func conflictList(cs []*eventstore.ConflictError) []string {
	out := []string{}
	for _, c := range cs {
		out = append(out, c.Error())
	}
	return out
}
