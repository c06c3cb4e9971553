package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// The charts the report links, written beside it.
const (
	chartThroughput = "throughput.png"
	chartLatency    = "latency.png"
)

// latencyWorkloads are the workloads whose latency percentiles the report
// shows, with their titles.
var latencyWorkloads = []struct{ w, title string }{
	{"Append/batch=1", "single durable Append"},
	{"Replay/aggregate=100", "loading a 100-event aggregate"},
	{"Subscribe/latency", "Append's return to a live subscriber's yield"},
}

// percentileUnits are the latency metrics of package bench, in order.
var percentileUnits = []struct{ unit, name string }{
	{"p50-ns", "p50"}, {"p90-ns", "p90"}, {"p99-ns", "p99"}, {"p99.9-ns", "p99.9"},
}

// writeCharts writes the report's charts into dir and returns their file
// names: events/s per workload and backend, one panel per workload, and
// the latency percentiles per store. A chart with no data is not written.
func writeCharts(dir string, res *results) ([]string, error) {
	t := arrange(res)
	var written []string

	var panels []*plot.Plot
	for _, w := range t.workloads {
		var names []string
		var vals plotter.Values
		for _, b := range t.backends {
			if v, ok := t.value(res, w, b, "events/s"); ok {
				names = append(names, b)
				vals = append(vals, v)
			}
		}
		if len(vals) == 0 {
			continue
		}
		p := plot.New()
		p.Title.Text = w
		p.Title.TextStyle.Font.Size = vg.Points(9)
		p.Y.Label.Text = "events/s"
		p.Y.Tick.Marker = humanTicks{}
		p.Y.Min = 0
		bars, err := plotter.NewBarChart(vals, vg.Points(14))
		if err != nil {
			return written, err
		}
		bars.Color = color.RGBA{R: 0x33, G: 0x66, B: 0x99, A: 0xff}
		bars.LineStyle.Width = 0
		p.Add(bars)
		p.NominalX(names...)
		p.X.Tick.Label.Rotation = math.Pi / 5
		p.X.Tick.Label.XAlign = draw.XRight
		p.X.Tick.Label.YAlign = draw.YCenter
		p.X.Tick.Label.Font.Size = vg.Points(8)
		panels = append(panels, p)
	}
	if len(panels) > 0 {
		if err := savePanels(filepath.Join(dir, chartThroughput), panels, 3, vg.Points(230), vg.Points(200)); err != nil {
			return written, err
		}
		written = append(written, chartThroughput)
	}

	panels = panels[:0]
	for _, lw := range latencyWorkloads {
		p := plot.New()
		p.Title.Text = "latency: " + lw.title + " (" + lw.w + ")"
		p.Title.TextStyle.Font.Size = vg.Points(9)
		p.Y.Label.Text = "time"
		p.Y.Tick.Marker = durationTicks{}
		p.Y.Min = 0
		var stores []string
		for _, b := range t.backends {
			if _, ok := t.value(res, lw.w, b, "p50-ns"); ok {
				stores = append(stores, b)
			}
		}
		if len(stores) == 0 {
			continue
		}
		width := vg.Points(40 / float64(len(stores)))
		for i, b := range stores {
			var vals plotter.Values
			for _, pu := range percentileUnits {
				v, _ := t.value(res, lw.w, b, pu.unit)
				vals = append(vals, v)
			}
			bars, err := plotter.NewBarChart(vals, width)
			if err != nil {
				return written, err
			}
			bars.Color = plotutil.Color(i)
			bars.LineStyle.Width = 0
			bars.Offset = vg.Length(float64(i)-float64(len(stores)-1)/2) * width
			p.Add(bars)
			p.Legend.Add(b, bars)
		}
		var names []string
		for _, pu := range percentileUnits {
			names = append(names, pu.name)
		}
		p.NominalX(names...)
		p.Legend.Top = true
		p.Legend.Left = true
		p.Legend.TextStyle.Font.Size = vg.Points(8)
		panels = append(panels, p)
	}
	if len(panels) > 0 {
		if err := savePanels(filepath.Join(dir, chartLatency), panels, 2, vg.Points(360), vg.Points(260)); err != nil {
			return written, err
		}
		written = append(written, chartLatency)
	}
	return written, nil
}

// savePanels draws panels in a grid of cols columns, each w by h, into a
// PNG file at path.
func savePanels(path string, panels []*plot.Plot, cols int, w, h vg.Length) error {
	cols = min(cols, len(panels))
	rows := (len(panels) + cols - 1) / cols
	img := vgimg.New(w*vg.Length(cols), h*vg.Length(rows))
	dc := draw.New(img)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	grid := make([][]*plot.Plot, rows)
	for r := range grid {
		grid[r] = make([]*plot.Plot, cols)
		for c := range grid[r] {
			if i := r*cols + c; i < len(panels) {
				grid[r][c] = panels[i]
			}
		}
	}
	tiles := draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Points(6), PadY: vg.Points(6),
		PadTop: vg.Points(4), PadBottom: vg.Points(4), PadLeft: vg.Points(4), PadRight: vg.Points(4)}
	canvases := plot.Align(grid, tiles, dc)
	for r := range grid {
		for c, p := range grid[r] {
			if p != nil {
				p.Draw(canvases[r][c])
			}
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// humanTicks labels an axis of rates as human does.
type humanTicks struct{}

func (humanTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = human(ticks[i].Value)
		}
	}
	return ticks
}

// durationTicks labels an axis of nanoseconds as humanDuration does.
type durationTicks struct{}

func (durationTicks) Ticks(lo, hi float64) []plot.Tick {
	ticks := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ticks {
		if ticks[i].Label != "" {
			ticks[i].Label = strings.Replace(humanDuration(ticks[i].Value), ".0 ", " ", 1)
		}
	}
	return ticks
}

// labelOf returns the label of workload w.
func labelOf(w string) string {
	if l := labels[w]; l != "" {
		return l
	}
	return w
}
