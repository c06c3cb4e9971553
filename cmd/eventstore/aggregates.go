package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// aggregateInfo is one line of the aggregates command.
type aggregateInfo struct {
	ID      string    `json:"aggregate_id"`
	Version uint64    `json:"version"`
	Last    time.Time `json:"-"`
}

func newAggregatesCmd(g *globals) *cobra.Command {
	var prefix, after string
	var limit int
	c := &cobra.Command{
		Use:   "aggregates STORE",
		Short: "Aggregate IDs with their version and last timestamp, sorted, a page at a time",
		Long: `aggregates lists aggregate IDs in byte order, each with its version (that of
its last event) and the timestamp of its last event.

It prints at most --limit aggregates (1000; 0 for all) after the ID --after;
when more follow, it says on stderr how to get the next page.`,
		Args: args(1, "STORE"),
		RunE: func(c *cobra.Command, a []string) error {
			if limit < 0 {
				return usagef("--limit %d: must be 0 (all) or more", limit)
			}
			s, err := openStore(c.Context(), g, a[0], readOnly)
			if err != nil {
				return err
			}
			defer s.Close()
			page, more, err := s.aggregates(c.Context(), g, prefix, after, limit)
			if err != nil {
				return err
			}
			t := newTable(g, "AGGREGATE", "VERSION", "LAST TIMESTAMP")
			for _, ag := range page {
				obj := struct {
					aggregateInfo
					Last string `json:"last_timestamp"`
				}{ag, formatTime(ag.Last)}
				if err := t.row(obj, quoteName(ag.ID), ag.Version, formatTime(ag.Last)); err != nil {
					return err
				}
			}
			if err := t.flush(); err != nil {
				return err
			}
			if more {
				fmt.Fprintf(g.stderr, "more aggregates follow: next page with --after %q\n", page[len(page)-1].ID)
			}
			return nil
		},
	}
	c.Flags().StringVar(&prefix, "prefix", "", "only aggregates whose ID starts with these bytes")
	c.Flags().StringVar(&after, "after", "", "start after this aggregate ID (the last one of the previous page)")
	c.Flags().IntVar(&limit, "limit", 1000, "at most this many aggregates (0: all)")
	return c
}

// aggregates returns a page of aggregates, and whether more follow.
func (s *store) aggregates(ctx context.Context, g *globals, prefix, after string, limit int) ([]aggregateInfo, bool, error) {
	if s.pg != nil {
		n := 0
		if limit > 0 {
			n = limit + 1
		}
		page, err := s.pgAggregates(ctx, prefix, after, n)
		if err != nil {
			return nil, false, err
		}
		if limit > 0 && len(page) > limit {
			return page[:limit], true, nil
		}
		return page, false, nil
	}
	all, err := s.boltAggregates(ctx, g.timeout, prefix)
	if err != nil {
		return nil, false, err
	}
	// The events bucket orders IDs by length first: sort them by bytes.
	slices.SortFunc(all, func(a, b aggregateInfo) int { return strings.Compare(a.ID, b.ID) })
	i, _ := slices.BinarySearchFunc(all, after, func(a aggregateInfo, id string) int { return strings.Compare(a.ID, id) })
	for i < len(all) && all[i].ID <= after {
		i++
	}
	page := all[i:]
	more := false
	if limit > 0 && len(page) > limit {
		page, more = page[:limit], true
	}
	for j := range page {
		for e, err := range s.ReadAggregate(ctx, page[j].ID, page[j].Version-1) {
			if err != nil {
				return nil, false, err
			}
			page[j].Last = e.Timestamp
		}
	}
	return page, more, nil
}
