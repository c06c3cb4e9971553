package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/eventstore-go/eventstore"
)

// timeLayout is how every time is printed: RFC 3339 in UTC with
// microseconds, the precision stores keep.
const timeLayout = "2006-01-02T15:04:05.000000Z07:00"

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(timeLayout)
}

// parseTime reads a time flag: RFC 3339 (any precision, any zone), or a
// date (2006-01-02, midnight UTC).
func parseTime(flag, s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	return time.Time{}, usagef("--%s %q: not an RFC 3339 time (2024-05-01T12:00:00Z) or a date (2024-05-01)", flag, s)
}

// jsonEvent is an event as one line of NDJSON: the export format, and what
// --json prints. Payload holds the payload verbatim when it has no line
// break; PayloadText holds it, as a JSON string of the exact bytes,
// otherwise (NDJSON allows no line break inside a line).
type jsonEvent struct {
	ID          string            `json:"id"`
	AggregateID string            `json:"aggregate_id"`
	Type        string            `json:"type"`
	Version     uint64            `json:"version"`
	Position    uint64            `json:"position"`
	Timestamp   string            `json:"timestamp"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	Tags        []string          `json:"tags,omitempty"`
	Payload     json.RawMessage   `json:"payload,omitempty"`
	PayloadText *string           `json:"payload_text,omitempty"`
}

// appendEventJSON appends e as one line of NDJSON, newline included. The
// payload is written byte for byte (json.Marshal would compact it).
func appendEventJSON(dst []byte, e eventstore.Event) ([]byte, error) {
	je := jsonEvent{
		ID: e.ID, AggregateID: e.AggregateID, Type: e.Type,
		Version: e.Version, Position: e.Position,
		Timestamp: formatTime(e.Timestamp), Metadata: e.Metadata, Tags: e.Tags,
	}
	multiline := bytes.ContainsAny(e.Payload, "\r\n")
	if multiline {
		s := string(e.Payload)
		je.PayloadText = &s
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(je); err != nil {
		return dst, err
	}
	line := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if multiline || len(e.Payload) == 0 {
		return append(append(dst, line...), '\n'), nil
	}
	// {..."metadata":{...}} -> {...,"payload":<verbatim>}
	dst = append(dst, line[:len(line)-1]...)
	dst = append(dst, `,"payload":`...)
	dst = append(dst, e.Payload...)
	return append(dst, "}\n"...), nil
}

// decodeEvent reads one line written by appendEventJSON.
func decodeEvent(line []byte) (eventstore.Event, error) {
	var je jsonEvent
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&je); err != nil {
		return eventstore.Event{}, err
	}
	e := eventstore.Event{
		ID: je.ID, AggregateID: je.AggregateID, Type: je.Type,
		Version: je.Version, Position: je.Position, Metadata: je.Metadata,
		Tags: je.Tags, Payload: je.Payload,
	}
	if je.PayloadText != nil {
		if je.Payload != nil {
			return e, fmt.Errorf("both payload and payload_text")
		}
		e.Payload = json.RawMessage(*je.PayloadText)
	}
	if e.Payload == nil {
		return e, fmt.Errorf("no payload")
	}
	t, err := time.Parse(time.RFC3339Nano, je.Timestamp)
	if err != nil {
		return e, fmt.Errorf("timestamp: %w", err)
	}
	e.Timestamp = t.UTC()
	return e, nil
}

// eventPrinter prints events as a table, as blocks (--pretty) or as NDJSON
// (--json).
type eventPrinter struct {
	g      *globals
	w      *bufio.Writer
	tw     *tabwriter.Writer
	rows   int
	follow bool // flush after every event
	line   []byte
}

func newEventPrinter(g *globals, follow bool) *eventPrinter {
	p := &eventPrinter{g: g, w: bufio.NewWriter(g.stdout), follow: follow}
	if !g.json && !g.pretty {
		p.tw = tabwriter.NewWriter(p.w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(p.tw, "POSITION\tTIMESTAMP\tAGGREGATE\tVERSION\tTYPE\tPAYLOAD")
	}
	return p
}

func (p *eventPrinter) print(e eventstore.Event) error {
	var err error
	switch {
	case p.g.json:
		p.line, err = appendEventJSON(p.line[:0], e)
		if err == nil {
			_, err = p.w.Write(p.line)
		}
	case p.g.pretty:
		fmt.Fprintf(p.w, "position %d  %s  %s  version %d  %s  id %s\n", e.Position, formatTime(e.Timestamp), quoteName(e.AggregateID), e.Version, quoteName(e.Type), e.ID)
		if len(e.Metadata) > 0 {
			md, _ := json.MarshalIndent(e.Metadata, "  ", "  ")
			fmt.Fprintf(p.w, "  metadata: %s\n", md)
		}
		if len(e.Tags) > 0 {
			tags, _ := json.Marshal(e.Tags)
			fmt.Fprintf(p.w, "  tags: %s\n", tags)
		}
		var ind bytes.Buffer
		if json.Indent(&ind, e.Payload, "  ", "  ") != nil {
			ind.Reset()
			ind.Write(e.Payload)
		}
		_, err = fmt.Fprintf(p.w, "  %s\n\n", ind.Bytes())
	default:
		fmt.Fprintf(p.tw, "%d\t%s\t%s\t%d\t%s\t%s\n", e.Position, formatTime(e.Timestamp), quoteName(e.AggregateID), e.Version, quoteName(e.Type), oneLine(e.Payload))
		p.rows++
		if p.rows%256 == 0 {
			err = p.tw.Flush()
		}
	}
	if err == nil && p.follow {
		err = p.flush()
	}
	return err
}

func (p *eventPrinter) flush() error {
	if p.tw != nil {
		if err := p.tw.Flush(); err != nil {
			return err
		}
	}
	return p.w.Flush()
}

// oneLine returns a payload for a table cell: on one line, tabs removed.
func oneLine(payload []byte) string {
	if bytes.ContainsAny(payload, "\r\n\t") {
		var b bytes.Buffer
		if json.Compact(&b, payload) == nil {
			return b.String()
		}
		return strings.NewReplacer("\r", `\r`, "\n", `\n`, "\t", `\t`).Replace(string(payload))
	}
	return string(payload)
}

// quoteName shows a name as it is, unless it holds spaces or control
// characters that would break a table: then quoted.
func quoteName(s string) string {
	if strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return strconv.Quote(s)
	}
	return s
}

// table prints rows aligned, or each as a JSON object (--json).
type table struct {
	g  *globals
	tw *tabwriter.Writer
	w  *bufio.Writer
}

func newTable(g *globals, header ...string) *table {
	t := &table{g: g, w: bufio.NewWriter(g.stdout)}
	if !g.json {
		t.tw = tabwriter.NewWriter(t.w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(t.tw, strings.Join(header, "\t"))
	}
	return t
}

// row prints cells as a table row, or obj as a JSON line.
func (t *table) row(obj any, cells ...any) error {
	if t.g.json {
		return writeJSON(t.w, obj)
	}
	s := make([]string, len(cells))
	for i, c := range cells {
		s[i] = fmt.Sprint(c)
	}
	_, err := fmt.Fprintln(t.tw, strings.Join(s, "\t"))
	return err
}

func (t *table) flush() error {
	if t.tw != nil {
		if err := t.tw.Flush(); err != nil {
			return err
		}
	}
	return t.w.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// progress shows a progress bar on stderr when stderr is a terminal, and
// nothing otherwise. A nil *progress does nothing.
type progress struct {
	bar      *progressbar.ProgressBar
	finished bool
}

// newProgress starts a bar of total units (events or bytes; -1 when not
// known); nil when stderr is not a terminal.
func newProgress(g *globals, total int64, what string, bytes bool) *progress {
	f, ok := g.stderr.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(f),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(),
		progressbar.OptionSetItsString("events"),
		progressbar.OptionShowIts(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(100 * time.Millisecond),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionFullWidth(),
	}
	if bytes {
		opts = append(opts, progressbar.OptionShowBytes(true))
	}
	return &progress{bar: progressbar.NewOptions64(total, opts...)}
}

func (p *progress) add(n int) {
	if p != nil {
		_ = p.bar.Add(n)
	}
}

// done clears the bar; calling it again does nothing.
func (p *progress) done() {
	if p != nil && !p.finished {
		p.finished = true
		_ = p.bar.Finish()
		_ = p.bar.Clear()
	}
}

// progressWriter counts the bytes written through it on a progress bar.
type progressWriter struct {
	w io.Writer
	p *progress
}

func (pw progressWriter) Write(b []byte) (int, error) {
	n, err := pw.w.Write(b)
	pw.p.add(n)
	return n, err
}

// spin shows a spinner on stderr (when it is a terminal) for work whose
// progress is not known, until the returned function is called.
func spin(g *globals, what string) (stop func()) {
	p := newProgress(g, -1, what, false)
	if p == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = p.bar.Add(0)
			}
		}
	}()
	return func() {
		close(done)
		<-finished
		p.done()
	}
}
