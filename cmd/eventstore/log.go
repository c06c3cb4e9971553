package main

import (
	"iter"
	"time"

	"github.com/spf13/cobra"

	"github.com/eventstore-go/eventstore"
)

func newLogCmd(g *globals) *cobra.Command {
	var (
		after        uint64
		types, tags  []string
		prefix       string
		since, until string
		n            int
	)
	c := &cobra.Command{
		Use:   "log STORE",
		Short: "The global log in position order, filtered",
		Long: `log prints the global log in position order, from the position after
--after up to the head when it starts.

Filters combine: --type (repeat it for several types), --tag (repeat it:
events carrying all of them), --prefix (aggregate IDs
starting with these bytes), --since and --until (timestamps in
[since, until), RFC 3339 or a date; timestamps do not order the log, so this
filters, it does not seek), -n (at most N events).`,
		Args: args(1, "STORE"),
		RunE: func(c *cobra.Command, a []string) error {
			if n < 0 {
				return usagef("-n %d: must be 0 (no limit) or more", n)
			}
			var from, to time.Time
			var err error
			if since != "" {
				if from, err = parseTime("since", since); err != nil {
					return err
				}
			}
			if until != "" {
				if to, err = parseTime("until", until); err != nil {
					return err
				}
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
			f := eventstore.Filter{Types: types, Tags: tags, AggregatePrefix: prefix}
			var events iter.Seq2[eventstore.Event, error]
			if len(types) == 1 {
				events = s.ReadType(ctx, types[0], after)
			} else {
				events = s.ReadAll(ctx, after)
			}
			p := newEventPrinter(g, false)
			printed := 0
			for e, err := range events {
				if err != nil {
					return err
				}
				if e.Position > head || (n > 0 && printed >= n) {
					break
				}
				if !f.Match(e) || (!from.IsZero() && e.Timestamp.Before(from)) || (!to.IsZero() && !e.Timestamp.Before(to)) {
					continue
				}
				if err := p.print(e); err != nil {
					return err
				}
				printed++
			}
			return p.flush()
		},
	}
	fl := c.Flags()
	fl.Uint64Var(&after, "after", 0, "start after this position")
	fl.StringArrayVar(&types, "type", nil, "only events of this type (repeat for several)")
	fl.StringArrayVar(&tags, "tag", nil, "only events carrying this tag (repeat: all of them)")
	fl.StringVar(&prefix, "prefix", "", "only events of aggregates whose ID starts with these bytes")
	fl.StringVar(&since, "since", "", "only events with a timestamp at or after this time")
	fl.StringVar(&until, "until", "", "only events with a timestamp before this time")
	fl.IntVarP(&n, "limit", "n", 0, "at most this many events (0: all)")
	return c
}
