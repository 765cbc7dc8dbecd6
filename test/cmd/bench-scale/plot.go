package main

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// series is one side's line on a panel.
type series struct {
	name  string
	color string
	x, y  []float64
}

// panel is one chart: a y quantity against N.
type panel struct {
	title  string
	yLabel string
	series []series
}

// writeSVG draws the panels side by side, each with axes, ticks, the points
// joined and a legend: a plain SVG file with no script or external reference.
func writeSVG(w io.Writer, caption string, panels []panel) error {
	const pw, ph, top, left, right, bottom = 380.0, 280.0, 40.0, 70.0, 20.0, 50.0
	width := pw * float64(len(panels))
	height := ph + 30
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="11">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	for i, p := range panels {
		ox := pw * float64(i)
		x0, x1, y0, y1 := ox+left, ox+pw-right, ph-bottom, top
		maxX, maxY := 0.0, 0.0
		for _, s := range p.series {
			for k := range s.x {
				maxX, maxY = math.Max(maxX, s.x[k]), math.Max(maxY, s.y[k])
			}
		}
		maxX, maxY = niceCeil(maxX), niceCeil(maxY)
		px := func(v float64) float64 { return x0 + (x1-x0)*v/maxX }
		py := func(v float64) float64 { return y0 - (y0-y1)*v/maxY }
		fmt.Fprintf(&b, `<text x="%.1f" y="20" font-size="13" font-weight="bold">%s</text>`+"\n", x0, html.EscapeString(p.title))
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", x0, y0, x1, y0)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", x0, y0, x0, y1)
		for t := 0; t <= 4; t++ {
			vx, vy := maxX*float64(t)/4, maxY*float64(t)/4
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", px(vx), y0+15, tick(vx))
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", x0-5, py(vy)+4, tick(vy))
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", x0, py(vy), x1, py(vy))
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">Pods (N)</text>`+"\n", (x0+x1)/2, y0+32)
		fmt.Fprintf(&b, `<text transform="translate(%.1f,%.1f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", ox+14, (y0+y1)/2, html.EscapeString(p.yLabel))
		for k, s := range p.series {
			var pts []string
			for j := range s.x {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(s.x[j]), py(s.y[j])))
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", s.color, strings.Join(pts, " "))
			for j := range s.x {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", px(s.x[j]), py(s.y[j]), s.color)
			}
			ly := y1 + 12 + 14*float64(k)
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="10" height="10" fill="%s"/><text x="%.1f" y="%.1f">%s</text>`+"\n",
				x0+10, ly-9, s.color, x0+24, ly, html.EscapeString(s.name))
		}
	}
	fmt.Fprintf(&b, `<text x="10" y="%.1f" fill="#555">%s</text>`+"\n", height-8, html.EscapeString(caption))
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (1 for v ≤ 0).
func niceCeil(v float64) float64 {
	if v <= 0 || math.IsNaN(v) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func tick(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}
