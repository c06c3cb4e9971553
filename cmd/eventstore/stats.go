package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// stats is what the stats command prints.
type stats struct {
	Store         string      `json:"store"`
	Backend       string      `json:"backend"`
	Format        string      `json:"format"`
	Events        uint64      `json:"events"`
	Aggregates    uint64      `json:"aggregates"`
	Head          uint64      `json:"head"`
	First         time.Time   `json:"-"`
	Last          time.Time   `json:"-"`
	FirstText     string      `json:"first_timestamp,omitempty"`
	LastText      string      `json:"last_timestamp,omitempty"`
	Size          int64       `json:"size_bytes"`
	BytesPerEvent float64     `json:"bytes_per_event"`
	Snapshots     uint64      `json:"snapshots"`
	Checkpoints   uint64      `json:"checkpoints"`
	Types         []typeCount `json:"types"`
}

type typeCount struct {
	Type   string `json:"type"`
	Events uint64 `json:"events"`
}

func newStatsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "stats STORE",
		Short: "Counts of events, aggregates and types, the head, the time span, the size and the format",
		Long: `stats prints what a store holds: events, aggregates and types (with the
events of each type), the head position, the first and last timestamp, the
file size (bolt) or the events table's size with its indexes (PostgreSQL),
bytes per event, snapshots, checkpoints and the format version.

On bolt it walks the keys of the index buckets and decodes no record; on
PostgreSQL it runs aggregate queries. Neither checks the data: see verify.`,
		Args: args(1, "STORE"),
		RunE: func(c *cobra.Command, a []string) error {
			s, err := openStore(c.Context(), g, a[0], readOnly)
			if err != nil {
				return err
			}
			defer s.Close()
			st, err := s.stats(c.Context(), g)
			if err != nil {
				return err
			}
			return printStats(g, st)
		},
	}
}

func (s *store) stats(ctx context.Context, g *globals) (*stats, error) {
	st := &stats{Store: s.name, Types: []typeCount{}}
	if s.bolt != nil {
		st.Backend = "bolt"
		if err := s.boltStats(ctx, g.timeout, st); err != nil {
			return nil, err
		}
		fi, err := os.Stat(s.name)
		if err != nil {
			return nil, err
		}
		st.Size = fi.Size()
		// The types bucket orders names by length first: sort by bytes.
		slices.SortFunc(st.Types, func(a, b typeCount) int { return strings.Compare(a.Type, b.Type) })
	} else {
		st.Backend = "postgres"
		if err := s.pgStats(ctx, st); err != nil {
			return nil, err
		}
	}
	if st.Events > 0 {
		st.BytesPerEvent = float64(int64(float64(st.Size)/float64(st.Events)*10)) / 10
	}
	st.FirstText, st.LastText = formatTime(st.First), formatTime(st.Last)
	return st, nil
}

func printStats(g *globals, st *stats) error {
	if g.json {
		return writeJSON(g.stdout, st)
	}
	w := bufio.NewWriter(g.stdout)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	rows := [][2]string{
		{"store", st.Store},
		{"backend", st.Backend},
		{"format", st.Format},
		{"events", strconv.FormatUint(st.Events, 10)},
		{"aggregates", strconv.FormatUint(st.Aggregates, 10)},
		{"types", strconv.Itoa(len(st.Types))},
		{"head position", strconv.FormatUint(st.Head, 10)},
		{"first timestamp", st.FirstText},
		{"last timestamp", st.LastText},
		{"size", fmt.Sprintf("%s (%d bytes)", humanBytes(st.Size), st.Size)},
		{"bytes per event", strconv.FormatFloat(st.BytesPerEvent, 'f', 1, 64)},
		{"snapshots", strconv.FormatUint(st.Snapshots, 10)},
		{"checkpoints", strconv.FormatUint(st.Checkpoints, 10)},
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s:\t%s\n", r[0], r[1])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(st.Types) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "TYPE\tEVENTS")
		for _, tc := range st.Types {
			fmt.Fprintf(tw, "%s\t%d\n", quoteName(tc.Type), tc.Events)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return w.Flush()
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
