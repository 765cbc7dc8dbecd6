package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

// percentile is the nearest-rank percentile q (0..1) of ds.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

// slope is the least-squares slope of y over x (NaN with fewer than two
// distinct x).
func slope(x, y []float64) float64 {
	n := float64(len(x))
	var sx, sy, sxx, sxy float64
	for i := range x {
		sx += x[i]
		sy += y[i]
		sxx += x[i] * x[i]
		sxy += x[i] * y[i]
	}
	d := n*sxx - sx*sx
	if len(x) < 2 || d == 0 {
		return math.NaN()
	}
	return (n*sxy - sx*sy) / d
}

// histogram is a cumulative Prometheus histogram: upper bounds and counts.
type histogram struct {
	le     []float64 // ascending, +Inf last
	counts []float64
}

// sub is h minus an earlier snapshot of the same series (the requests in
// between).
func (h histogram) sub(before histogram) histogram {
	out := histogram{le: h.le, counts: append([]float64(nil), h.counts...)}
	for i, le := range h.le {
		for j, b := range before.le {
			if b == le {
				out.counts[i] -= before.counts[j]
			}
		}
	}
	return out
}

// count is the number of observations.
func (h histogram) count() float64 {
	if len(h.counts) == 0 {
		return 0
	}
	return h.counts[len(h.counts)-1]
}

// quantile is q (0..1) interpolated linearly inside its bucket, as
// PromQL's histogram_quantile does; NaN without observations.
func (h histogram) quantile(q float64) float64 {
	total := h.count()
	if total == 0 {
		return math.NaN()
	}
	rank := q * total
	prevLE, prevCount := 0.0, 0.0
	for i, le := range h.le {
		if h.counts[i] >= rank {
			if math.IsInf(le, 1) {
				return prevLE // as histogram_quantile: the highest finite bound
			}
			in := h.counts[i] - prevCount
			if in == 0 {
				return le
			}
			return prevLE + (le-prevLE)*(rank-prevCount)/in
		}
		prevLE, prevCount = le, h.counts[i]
	}
	return prevLE
}

// admissionHistogram reads, from the apiserver's /metrics text, the
// histogram of apiserver_admission_webhook_admission_duration_seconds for
// the mutating webhook named webhook on Pod creation, summed over its other
// labels (rejected or not).
func admissionHistogram(r io.Reader, webhook string) (histogram, error) {
	const metric = "apiserver_admission_webhook_admission_duration_seconds_bucket{"
	byLE := map[float64]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), metric)
		if !ok {
			continue
		}
		labelText, value, ok := strings.Cut(line, "} ")
		if !ok {
			return histogram{}, fmt.Errorf("metrics: unreadable line %q", sc.Text())
		}
		labels := parseLabels(labelText)
		if labels["name"] != webhook || labels["type"] != "admit" || labels["operation"] != "CREATE" {
			continue
		}
		le, err := strconv.ParseFloat(labels["le"], 64)
		if err != nil {
			return histogram{}, fmt.Errorf("metrics: bucket bound %q: %w", labels["le"], err)
		}
		v, err := strconv.ParseFloat(strings.Fields(value)[0], 64)
		if err != nil {
			return histogram{}, fmt.Errorf("metrics: value %q: %w", value, err)
		}
		byLE[le] += v
	}
	if err := sc.Err(); err != nil {
		return histogram{}, err
	}
	var h histogram
	for le := range byLE {
		h.le = append(h.le, le)
	}
	sort.Float64s(h.le)
	for _, le := range h.le {
		h.counts = append(h.counts, byLE[le])
	}
	return h, nil
}

// parseLabels reads `a="x",b="y"` (the label values here hold no quotes).
func parseLabels(s string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if ok {
			out[k] = strings.Trim(v, `"`)
		}
	}
	return out
}
