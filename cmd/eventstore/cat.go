package main

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/eventstore-go/eventstore"
)

func newCatCmd(g *globals) *cobra.Command {
	var asOf string
	var afterVersion uint64
	c := &cobra.Command{
		Use:   "cat STORE AGGREGATE",
		Short: "One aggregate's events, in version order",
		Long: `cat prints the events of one aggregate in version order.

--after-version N starts after version N. --as-of TIME shows the events that made
the aggregate as it was at TIME: in version order, up to the first one whose
timestamp is after TIME, as aggregate.Repository.LoadTime replays them.`,
		Args: args(2, "STORE AGGREGATE"),
		RunE: func(c *cobra.Command, a []string) error {
			var until time.Time
			if asOf != "" {
				t, err := parseTime("as-of", asOf)
				if err != nil {
					return err
				}
				until = eventstore.NormalizeTime(t)
			}
			s, err := openStore(c.Context(), g, a[0], readOnly)
			if err != nil {
				return err
			}
			defer s.Close()
			p := newEventPrinter(g, false)
			for e, err := range s.ReadAggregate(c.Context(), a[1], afterVersion) {
				if err != nil {
					return err
				}
				if !until.IsZero() && e.Timestamp.After(until) {
					break
				}
				if err := p.print(e); err != nil {
					return err
				}
			}
			return p.flush()
		},
	}
	c.Flags().StringVar(&asOf, "as-of", "", "stop at the first event after this time (RFC 3339 or a date)")
	c.Flags().Uint64Var(&afterVersion, "after-version", 0, "only events after this version")
	return c
}
