package admission

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Results of an admission request, the values of the label "result" of
// ramvault_injector_admission_requests_total.
const (
	requestAllowed = "allowed" // answered allowed: patched or unchanged
	requestDenied  = "denied"  // answered allowed: false
	requestInvalid = "invalid" // not an AdmissionReview we take: 400, 405, 413, 415
	requestError   = "error"   // the injector failed: 500
)

// Results of an injection, the values of the label "result" of
// ramvault_injector_injections_total.
const (
	injectionInjected = "injected" // the agent was added
	injectionSkipped  = "skipped"  // not opted in, or injected before
	injectionDenied   = "denied"   // Inject found problems
	injectionError    = "error"    // the Pod could not be decoded or patched
)

// Metrics are the injector's Prometheus metrics, registered on a registry
// of the caller's (never the global one). A nil *Metrics records nothing.
type Metrics struct {
	requests   *prometheus.CounterVec
	duration   prometheus.Histogram
	laneWaits  *prometheus.HistogramVec
	injections *prometheus.CounterVec
	certExpiry prometheus.Gauge
	leader     prometheus.Gauge
}

// NewMetrics creates the metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ramvault_injector_admission_requests_total",
			Help: "Admission requests answered at /mutate, by result: allowed, denied, invalid (400/405/413/415), error (500).",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ramvault_injector_admission_duration_seconds",
			Help:    "Time to answer an admission request at /mutate, in seconds.",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5},
		}),
		laneWaits: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ramvault_injector_admission_lane_wait_seconds",
			Help:    "Time an admission request waited for a place in its lane (small: a review of up to 64 KiB, large: more or of unknown length), in seconds.",
			Buckets: []float64{0.001, 0.01, 0.1, 1, 5},
		}, []string{"lane"}),
		injections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ramvault_injector_injections_total",
			Help: "Pod CREATE requests, by result: injected, skipped (not opted in, or injected before), denied, error.",
		}, []string{"result"}),
		certExpiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ramvault_injector_serving_certificate_expiry_timestamp_seconds",
			Help: "When the serving certificate in use expires, in seconds since the epoch (0 before one is loaded).",
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ramvault_injector_leader",
			Help: "1 while this replica leads (with --self-signed: it writes the certificate Secret and the caBundle), else 0.",
		}),
	}
	reg.MustRegister(m.requests, m.duration, m.laneWaits, m.injections, m.certExpiry, m.leader)
	// Every series exists from the start, at 0, so rates need no absent().
	for _, r := range []string{requestAllowed, requestDenied, requestInvalid, requestError} {
		m.requests.WithLabelValues(r)
	}
	for _, l := range []string{laneSmall, laneLarge} {
		m.laneWaits.WithLabelValues(l)
	}
	for _, r := range []string{injectionInjected, injectionSkipped, injectionDenied, injectionError} {
		m.injections.WithLabelValues(r)
	}
	return m
}

func (m *Metrics) request(result string, took time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(result).Inc()
	m.duration.Observe(took.Seconds())
}

func (m *Metrics) laneWait(lane string, waited time.Duration) {
	if m != nil {
		m.laneWaits.WithLabelValues(lane).Observe(waited.Seconds())
	}
}

func (m *Metrics) injection(result string) {
	if m != nil && result != "" {
		m.injections.WithLabelValues(result).Inc()
	}
}

// SetCertificateExpiry records notAfter, the expiry of the serving
// certificate in use.
func (m *Metrics) SetCertificateExpiry(notAfter time.Time) {
	if m != nil {
		m.certExpiry.Set(float64(notAfter.Unix()))
	}
}

// SetLeader records whether this replica leads.
func (m *Metrics) SetLeader(yes bool) {
	if m == nil {
		return
	}
	if yes {
		m.leader.Set(1)
	} else {
		m.leader.Set(0)
	}
}
