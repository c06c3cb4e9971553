package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/eventstore-go/eventstore"
)

// maxProblems is how many problems of each kind verify lists.
const maxProblems = 100

func newVerifyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "verify STORE",
		Short: "Check every record, index, position and version; exit status 1 on problems",
		Long: `verify checks a store and lists what is wrong. Exit status 0: all is well;
1: problems found (listed on stdout); 2: the store could not be read at all.

bolt: the file's page structure (read from the file, so a damaged file is
reported, never crashes), every record's checksum and that its fields match
its key, versions 1, 2, 3, ... in every aggregate, positions 1 to the head
without gaps, and that every index bucket holds exactly one entry per event,
pointing to it ((*bolt.Store).Check). It stops at the first problem.

PostgreSQL: positions 1 to the head without gaps (each gap listed), the
log_head row, and versions 1, 2, 3, ... in every aggregate (each break
listed, at most 100 of each kind). Checksums, uniqueness and JSON validity
are the server's.`,
		Args: args(1, "STORE"),
		RunE: func(c *cobra.Command, a []string) error {
			ctx := c.Context()
			var problems []string
			s, err := openStore(ctx, g, a[0], readOnly)
			switch {
			case err == nil:
				defer s.Close()
				stopSpin := spin(g, "verify")
				if s.bolt != nil {
					err := s.bolt.Check(ctx)
					stopSpin()
					if err != nil {
						if !errors.Is(err, eventstore.ErrCorrupt) {
							return err
						}
						problems = append(problems, err.Error())
					}
				} else {
					problems, err = s.pgVerify(ctx, maxProblems)
					stopSpin()
					if err != nil {
						return err
					}
				}
			case !isPostgres(a[0]) && (errors.Is(err, eventstore.ErrCorrupt) || errors.Is(err, eventstore.ErrUnknownFormat)):
				// The file does not even open: that is the finding.
				problems = append(problems, errors.Unwrap(err).Error())
			default:
				return err
			}
			if g.json {
				if err := writeJSON(g.stdout, struct {
					Store    string   `json:"store"`
					OK       bool     `json:"ok"`
					Problems []string `json:"problems"`
				}{a[0], len(problems) == 0, append([]string{}, problems...)}); err != nil {
					return err
				}
			} else if len(problems) == 0 {
				fmt.Fprintf(g.stdout, "%s: ok\n", a[0])
			} else {
				fmt.Fprintf(g.stdout, "%s: %d problem(s):\n", a[0], len(problems))
				for _, p := range problems {
					fmt.Fprintf(g.stdout, "  - %s\n", p)
				}
			}
			if len(problems) > 0 {
				return &problemsError{n: len(problems), what: "verify " + a[0]}
			}
			return nil
		},
	}
}
