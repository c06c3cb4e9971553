package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/eventstore-go/eventstore"
)

// maxLine is the longest line import reads: an event of the largest
// payload and metadata, escaped.
const maxLine = 16 << 20

func newImportCmd(g *globals) *cobra.Command {
	var batch int
	c := &cobra.Command{
		Use:   "import STORE FILE",
		Short: "Load an export (NDJSON, .gz or not) into any store; a rerun adds nothing",
		Long: `import reads FILE (or stdin for -), written by export, and stores its
events in STORE through the bulk Import: IDs, versions, timestamps, metadata,
tags and payloads are kept; positions are the store's own. A bolt file or a
PostgreSQL schema that does not exist is created.

It is idempotent: an event already stored with the same content is skipped,
so a rerun adds nothing and an interrupted import (Ctrl-C) resumes where it
stopped. Each batch (--batch events) is one transaction. An event ID stored
with other content, or an aggregate whose stored events differ from the
file's, stops the import with an error (exit status 2).

A gzip-compressed file is recognized by its content.

` + exportFormatDoc,
		Args: args(2, "STORE FILE"),
		RunE: func(c *cobra.Command, a []string) error {
			if batch < 1 || batch > eventstore.MaxImportEvents {
				return usagef("--batch %d: must be 1 to %d", batch, eventstore.MaxImportEvents)
			}
			ctx := c.Context()
			in, closeIn, err := openInput(a[1])
			if err != nil {
				return err
			}
			defer closeIn()
			r := bufio.NewReaderSize(in, 1<<20)
			first, err := readLine(r)
			if err != nil {
				return fmt.Errorf("%s: no header line: %w", a[1], err)
			}
			var h exportHeader
			if err := json.Unmarshal(first, &h); err != nil || h.Format != exportFormat {
				return fmt.Errorf("%s: not an eventstore export: the first line must be {\"format\":%q,...}", a[1], exportFormat)
			}
			if h.Version != exportVersion {
				return fmt.Errorf("%s: export format version %d, this eventstore reads version %d", a[1], h.Version, exportVersion)
			}
			s, err := openStore(ctx, g, a[0], readWrite)
			if err != nil {
				return err
			}
			defer s.Close()
			imp, ok := s.Store.(eventstore.Importer)
			if !ok {
				return fmt.Errorf("%s: this store cannot import", s.name)
			}
			bar := newProgress(g, int64(h.Head), "import", false)
			defer bar.done()
			var (
				pending        []eventstore.Event
				size           int
				read, imported int64
				lineNo         = 1
			)
			flush := func() error {
				if len(pending) == 0 {
					return nil
				}
				stored, err := imp.Import(ctx, pending)
				if err != nil {
					return fmt.Errorf("import the events of lines %d to %d: %w", lineNo-len(pending)+1, lineNo, err)
				}
				imported += int64(len(stored))
				bar.add(len(pending))
				pending, size = pending[:0], 0
				return nil
			}
			for {
				line, err := readLine(r)
				if err == io.EOF {
					break
				}
				if err != nil {
					return fmt.Errorf("%s: line %d: %w", a[1], lineNo+1, err)
				}
				lineNo++
				if len(bytes.TrimSpace(line)) == 0 {
					continue
				}
				e, err := decodeEvent(line)
				if err != nil {
					return fmt.Errorf("%s: line %d: %w", a[1], lineNo, err)
				}
				read++
				n := eventSize(e)
				if len(pending) >= batch || (len(pending) > 0 && size+n > eventstore.MaxImportSize) {
					if err := flush(); err != nil {
						return err
					}
				}
				pending = append(pending, e)
				size += n
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			if err := flush(); err != nil {
				return err
			}
			bar.done()
			if g.json {
				return writeJSON(g.stdout, struct {
					Read     int64 `json:"events"`
					Imported int64 `json:"imported"`
					Skipped  int64 `json:"skipped"`
				}{read, imported, read - imported})
			}
			fmt.Fprintf(g.stdout, "%d events read, %d imported, %d already stored\n", read, imported, read-imported)
			return nil
		},
	}
	c.Flags().IntVar(&batch, "batch", 1000, "events per transaction")
	return c
}

// eventSize is what an event counts towards eventstore.MaxImportSize.
func eventSize(e eventstore.Event) int {
	n := len(e.Payload)
	for k, v := range e.Metadata {
		n += len(k) + len(v)
	}
	return n
}

// readLine reads one line, without its \n; io.EOF at the end.
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, isPrefix, err := r.ReadLine()
		if err != nil {
			if err == io.EOF && line != nil {
				return line, nil
			}
			return nil, err
		}
		line = append(line, chunk...)
		if len(line) > maxLine {
			return nil, fmt.Errorf("line longer than %d bytes", maxLine)
		}
		if !isPrefix {
			return line, nil
		}
	}
}

// openInput opens a file (or stdin for "-"), decompressing gzip.
func openInput(name string) (io.Reader, func(), error) {
	var f io.Reader = os.Stdin
	closeF := func() {}
	if name != "-" {
		file, err := os.Open(name)
		if err != nil {
			return nil, nil, err
		}
		f, closeF = file, func() { _ = file.Close() }
	}
	br := bufio.NewReader(f)
	magic, _ := br.Peek(2)
	if bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			closeF()
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		return zr, closeF, nil
	}
	return br, closeF, nil
}
