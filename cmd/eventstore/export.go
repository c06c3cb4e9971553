package main

import (
	"bufio"
	"compress/gzip"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// exportFormat and exportVersion name the export format, in its header
// line.
const (
	exportFormat  = "eventstore-ndjson"
	exportVersion = 1
)

// exportHeader is the first line of an export.
type exportHeader struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	Head    uint64 `json:"head"`
	Created string `json:"created,omitempty"`
}

// exportFormatDoc documents the export format, for export's and import's
// help.
const exportFormatDoc = `The format (eventstore-ndjson, version 1) is NDJSON: one JSON object per line,
UTF-8, lines ending in \n. The first line is a header:

  {"format":"eventstore-ndjson","version":1,"head":1234,"created":"2024-05-01T12:00:00.000000Z"}

(head is the last position exported). Every further line is one event, in
position order, with all its fields:

  {"id":"0190a1b2-...","aggregate_id":"user-1","type":"UserCreated","version":1,
   "position":1,"timestamp":"2024-05-01T12:00:00.123456Z",
   "metadata":{"correlation_id":"..."},"tags":["org:7"],"payload":{"name":"Ada"}}

(one line in the file). timestamp is RFC 3339 in UTC with microseconds;
metadata and tags are left out when the event has none; payload is the payload's JSON
byte for byte. A payload containing a line break (pretty-printed JSON) is
written instead as "payload_text", a JSON string holding its exact bytes,
since NDJSON lines cannot break. Readers must refuse a header with another
format or a higher version.`

func newExportCmd(g *globals) *cobra.Command {
	var out string
	c := &cobra.Command{
		Use:   "export STORE",
		Short: "Every event as NDJSON, to stdout or a file (gzipped when the name ends in .gz)",
		Long: `export writes every event of the store, up to the head when it starts, as
NDJSON: to stdout, or with -o to a file, gzip-compressed when its name ends in
.gz. A file is written under a temporary name and renamed when complete and
synced, so an interrupted export (Ctrl-C) leaves no partial file behind.

` + exportFormatDoc,
		Args: args(1, "STORE"),
		RunE: func(c *cobra.Command, a []string) error {
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

			var w io.Writer = g.stdout
			var file *atomicFile
			if out != "" && out != "-" {
				if file, err = createAtomic(out); err != nil {
					return err
				}
				defer file.abort()
				w = file
			}
			var zw *gzip.Writer
			if strings.HasSuffix(out, ".gz") {
				zw = gzip.NewWriter(w)
				w = zw
			}
			bw := bufio.NewWriterSize(w, 256<<10)
			if err := writeJSON(bw, exportHeader{Format: exportFormat, Version: exportVersion, Head: head, Created: formatTime(time.Now())}); err != nil {
				return err
			}
			bar := newProgress(g, int64(head), "export", false)
			defer bar.done()
			var line []byte
			for e, err := range s.ReadAll(ctx, 0) {
				if err != nil {
					return err
				}
				if e.Position > head {
					break
				}
				if line, err = appendEventJSON(line[:0], e); err != nil {
					return err
				}
				if _, err := bw.Write(line); err != nil {
					return err
				}
				bar.add(1)
			}
			bar.done()
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := bw.Flush(); err != nil {
				return err
			}
			if zw != nil {
				if err := zw.Close(); err != nil {
					return err
				}
			}
			if file != nil {
				return file.commit()
			}
			return nil
		},
	}
	c.Flags().StringVarP(&out, "output", "o", "", "write to this file instead of stdout (.gz: gzip)")
	return c
}
