package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// app holds the state shared by the three servers: configuration, readiness and
// the request metrics.
type app struct {
	cfg config

	ready    atomic.Bool // false before the servers run and from SIGTERM on
	draining atomic.Bool

	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge

	mu  sync.Mutex // guards rng: handlers run concurrently
	rng *rand.Rand
}

// knownMethods keeps the `method` label bounded whatever clients send.
var knownMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true,
}

// newApp registers the seed app's metrics on reg.
func newApp(cfg config, reg prometheus.Registerer) *app {
	seed1, seed2 := rand.Uint64(), rand.Uint64()
	if cfg.HasSeed {
		seed1, seed2 = cfg.ErrorSeed, cfg.ErrorSeed^0x9e3779b97f4a7c15
	}
	a := &app{
		cfg: cfg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total",
			Help: "Requests served on the HTTP port, by status code, method and version.",
		}, []string{"code", "method", "version"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "request_duration_seconds",
			Help: "Latency of requests on the HTTP port, in seconds.",
			// Prometheus's default bounds: they hold the seed app's (.25 .. 10) and the
			// finer ones a latency threshold of 50 or 100 ms needs.
			Buckets: prometheus.DefBuckets,
		}, []string{"code", "method", "version"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name:        "in_flight_requests",
			Help:        "Requests being served on the HTTP port.",
			ConstLabels: prometheus.Labels{"version": cfg.Version},
		}),
		rng: rand.New(rand.NewPCG(seed1, seed2)),
	}
	reg.MustRegister(a.requests, a.duration, a.inFlight)
	// Create the series up front: Prometheus's increase() needs two samples of a
	// series, so a 5xx series born with the first error would hide that error.
	for _, code := range []string{"200", "500"} {
		a.requests.WithLabelValues(code, http.MethodGet, cfg.Version)
		a.duration.WithLabelValues(code, http.MethodGet, cfg.Version)
	}
	return a
}

// fail draws whether the next request gets an injected 500.
func (a *app) fail() bool {
	if a.cfg.ErrorRate <= 0 {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.rng.Float64() < a.cfg.ErrorRate
}

// answer is the JSON body of `/`.
type answer struct {
	Version string `json:"version"`
	Pod     string `json:"pod"`
	Error   string `json:"error,omitempty"`
}

// serveRoot answers any path with the version and the pod, as JSON when asked for
// (`Accept: application/json` or `?format=json`), else the seed's plain text.
func (a *app) serveRoot(w http.ResponseWriter, r *http.Request) {
	if a.cfg.ExtraLatency > 0 {
		timer := time.NewTimer(a.cfg.ExtraLatency)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-r.Context().Done():
			return // the client left; nothing to answer
		}
	}
	body := answer{Version: a.cfg.Version, Pod: a.cfg.Pod}
	status := http.StatusOK
	if a.fail() {
		status = http.StatusInternalServerError
		body.Error = fmt.Sprintf("injected failure (ERROR_RATE=%g)", a.cfg.ErrorRate)
	}
	// Headers too, so a client can tell who answered without reading the body.
	w.Header().Set("X-App-Version", a.cfg.Version)
	w.Header().Set("X-Pod-Name", a.cfg.Pod)
	if wantsJSON(r) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(body)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	if body.Error != "" {
		fmt.Fprintf(w, "Host: %s, Version: %s, Error: %s\n", body.Pod, body.Version, body.Error)
		return
	}
	fmt.Fprintf(w, "Host: %s, Version: %s\n", body.Pod, body.Version)
}

func wantsJSON(r *http.Request) bool {
	switch r.URL.Query().Get("format") {
	case "json":
		return true
	case "text":
		return false
	}
	return strings.Contains(r.Header.Get("Accept"), "application/json")
}

// statusRecorder remembers the status code a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// instrument counts and times every request of next by code, method and version.
func (a *app) instrument(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.inFlight.Inc()
		defer a.inFlight.Dec()
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next(rec, r)
		code := rec.code
		if code == 0 {
			code = 499 // the client closed the request before an answer (NGINX's code)
		}
		method := r.Method
		if !knownMethods[method] {
			method = "OTHER"
		}
		labels := []string{strconv.Itoa(code), method, a.cfg.Version}
		a.requests.WithLabelValues(labels...).Inc()
		a.duration.WithLabelValues(labels...).Observe(time.Since(start).Seconds())
	})
}

// probes serves /live (the process runs) and /ready (it takes traffic: false from
// SIGTERM on, so the endpoints drop the pod while it still serves).
func (a *app) probes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/live", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		switch {
		case a.ready.Load():
			fmt.Fprintln(w, "ready")
		case a.draining.Load():
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "draining")
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "starting")
		}
	})
	return mux
}

// drain marks the app as leaving: /ready fails from now on.
func (a *app) drain() {
	a.draining.Store(true)
	a.ready.Store(false)
}
