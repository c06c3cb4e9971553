package main

import (
	"github.com/spf13/cobra"

	"github.com/eventstore-go/eventstore"
)

func newTailCmd(g *globals) *cobra.Command {
	var n uint64
	var follow bool
	c := &cobra.Command{
		Use:   "tail STORE",
		Short: "The last events of the log; with -f, new ones as they are committed",
		Long: `tail prints the last -n events of the global log (10). With -f it then
prints each new event soon after its commit, through Subscribe, until Ctrl-C.

-f needs a store that other processes append to while tail reads it: a
PostgreSQL schema. A bolt file has one process at a time, so while tail holds
it no application can append; tail -f on a bolt file is refused.`,
		Args: args(1, "STORE"),
		RunE: func(c *cobra.Command, a []string) error {
			if follow && !isPostgres(a[0]) {
				return usagef("tail -f works on PostgreSQL stores only: a bolt file has one process at a time, so no application could append while tail holds it; run tail without -f")
			}
			s, err := openStore(c.Context(), g, a[0], readOnly)
			if err != nil {
				return err
			}
			defer s.Close()
			ctx := c.Context()
			head, err := s.Head(ctx)
			if err != nil {
				return err
			}
			start := uint64(0)
			if head > n {
				start = head - n
			}
			p := newEventPrinter(g, follow)
			if !follow {
				for e, err := range s.ReadAll(ctx, start) {
					if err != nil {
						return err
					}
					if e.Position > head {
						break
					}
					if err := p.print(e); err != nil {
						return err
					}
				}
				return p.flush()
			}
			if err := p.flush(); err != nil { // the table's header
				return err
			}
			for e, err := range s.Subscribe(ctx, start, eventstore.Filter{}) {
				if err != nil {
					return err // Ctrl-C: ctx's error; run reports the interruption
				}
				if err := p.print(e); err != nil {
					return err
				}
			}
			return nil
		},
	}
	c.Flags().Uint64VarP(&n, "lines", "n", 10, "how many of the last events to print")
	c.Flags().BoolVarP(&follow, "follow", "f", false, "then print new events as they are committed, until Ctrl-C (PostgreSQL)")
	return c
}
