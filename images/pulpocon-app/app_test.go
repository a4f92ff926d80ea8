package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func env(values map[string]string) func(string) string {
	return func(key string) string { return values[key] }
}

func host() (string, error) { return "host-1", nil }

func TestLoadConfigDefaults(t *testing.T) {
	cfg, err := loadConfig(env(nil), host)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Version != "unknown" || cfg.Pod != "host-1" || cfg.ErrorRate != 0 ||
		cfg.ExtraLatency != 0 || cfg.ShutdownDelay != 0 || cfg.ShutdownTimeout != 20*time.Second {
		t.Fatalf("unexpected defaults: %+v", cfg)
	}
}

func TestLoadConfigReadsEveryVariable(t *testing.T) {
	cfg, err := loadConfig(env(map[string]string{
		"VERSION": "v2.0.0", "POD_NAME": "app-v2-abc", "ERROR_RATE": "2%",
		"EXTRA_LATENCY": "50ms", "SHUTDOWN_DELAY": "3s", "SHUTDOWN_TIMEOUT": "7s",
		"ERROR_SEED": "42",
	}), host)
	if err != nil {
		t.Fatal(err)
	}
	want := config{Version: "v2.0.0", Pod: "app-v2-abc", ErrorRate: 0.02,
		ExtraLatency: 50 * time.Millisecond, ShutdownDelay: 3 * time.Second,
		ShutdownTimeout: 7 * time.Second, ErrorSeed: 42, HasSeed: true}
	if cfg != want {
		t.Fatalf("got %+v, want %+v", cfg, want)
	}
}

func TestLoadConfigErrorsNameTheVariable(t *testing.T) {
	cases := map[string]map[string]string{
		"ERROR_RATE":       {"ERROR_RATE": "1.5"},
		"EXTRA_LATENCY":    {"EXTRA_LATENCY": "50"},
		"SHUTDOWN_DELAY":   {"SHUTDOWN_DELAY": "-1s"},
		"SHUTDOWN_TIMEOUT": {"SHUTDOWN_TIMEOUT": "soon"},
		"ERROR_SEED":       {"ERROR_SEED": "-3"},
	}
	for name, values := range cases {
		_, err := loadConfig(env(values), host)
		if err == nil || !strings.HasPrefix(err.Error(), name+":") {
			t.Errorf("%s: want an error naming it, got %v", name, err)
		}
	}
	for _, bad := range []string{"abc", "-0.1", "NaN", "101%"} {
		if _, err := parseRate(bad); err == nil {
			t.Errorf("ERROR_RATE=%q accepted", bad)
		}
	}
	_, err := loadConfig(env(nil), func() (string, error) { return "", errors.New("no name") })
	if err == nil || !strings.Contains(err.Error(), "POD_NAME") {
		t.Errorf("a missing pod name must name POD_NAME, got %v", err)
	}
}

func newTestApp(t *testing.T, cfg config) (*app, *prometheus.Registry, http.Handler) {
	t.Helper()
	reg := prometheus.NewRegistry()
	a := newApp(cfg, reg)
	mux := http.NewServeMux()
	mux.Handle("/", a.instrument(a.serveRoot))
	return a, reg, mux
}

// counts returns http_requests_total by "code/method/version".
func counts(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, family := range families {
		if family.GetName() != "http_requests_total" {
			continue
		}
		for _, metric := range family.GetMetric() {
			out[key(metric)] = metric.GetCounter().GetValue()
		}
	}
	return out
}

func key(metric *dto.Metric) string {
	values := map[string]string{}
	for _, label := range metric.GetLabel() {
		values[label.GetName()] = label.GetValue()
	}
	return values["code"] + "/" + values["method"] + "/" + values["version"]
}

func get(handler http.Handler, target string, header map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, target, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	return rec
}

func TestRootAnswersVersionAndPodAsJSONOrText(t *testing.T) {
	_, _, handler := newTestApp(t, config{Version: "v1.0.0", Pod: "app-v1-x"})

	rec := get(handler, "/", map[string]string{"Accept": "application/json"})
	var body answer
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("not JSON: %q", rec.Body.String())
	}
	if rec.Code != 200 || body != (answer{Version: "v1.0.0", Pod: "app-v1-x"}) {
		t.Fatalf("got %d %+v", rec.Code, body)
	}
	if rec.Header().Get("X-App-Version") != "v1.0.0" || rec.Header().Get("X-Pod-Name") != "app-v1-x" {
		t.Fatalf("headers: %v", rec.Header())
	}
	if got := get(handler, "/any/path?format=json", nil).Header().Get("Content-Type"); got != "application/json" {
		t.Fatalf("?format=json gave %q", got)
	}
	text := get(handler, "/", nil).Body.String()
	if text != "Host: app-v1-x, Version: v1.0.0\n" {
		t.Fatalf("plain text answer: %q", text)
	}
}

func TestErrorRateOneFailsEveryRequestAndCountsIt(t *testing.T) {
	_, reg, handler := newTestApp(t, config{Version: "v3", Pod: "p", ErrorRate: 1})
	for range 5 {
		rec := get(handler, "/", map[string]string{"Accept": "application/json"})
		var body answer
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		if rec.Code != 500 || body.Version != "v3" || body.Error == "" {
			t.Fatalf("want an injected 500 naming the version, got %d %q", rec.Code, rec.Body.String())
		}
	}
	c := counts(t, reg)
	if c["500/GET/v3"] != 5 || c["200/GET/v3"] != 0 {
		t.Fatalf("counts: %v", c)
	}
}

func TestErrorRateZeroNeverFailsAndSeriesExistUpFront(t *testing.T) {
	_, reg, handler := newTestApp(t, config{Version: "v1", Pod: "p"})
	if c := counts(t, reg); len(c) != 2 || c["500/GET/v1"] != 0 || c["200/GET/v1"] != 0 {
		t.Fatalf("the 200 and 500 series must exist at 0 before any request: %v", c)
	}
	for range 200 {
		if code := get(handler, "/", nil).Code; code != 200 {
			t.Fatalf("got %d with ERROR_RATE=0", code)
		}
	}
	if c := counts(t, reg); c["200/GET/v1"] != 200 {
		t.Fatalf("counts: %v", c)
	}
}

func TestErrorRateIsReproducibleWithASeedAndNearItsValue(t *testing.T) {
	run := func() (failed int, codes []int) {
		_, reg, handler := newTestApp(t, config{Version: "v2", Pod: "p", ErrorRate: 0.1,
			ErrorSeed: 7, HasSeed: true})
		for range 4000 {
			code := get(handler, "/", nil).Code
			codes = append(codes, code)
			if code == 500 {
				failed++
			}
		}
		if c := counts(t, reg); int(c["500/GET/v2"]) != failed || int(c["200/GET/v2"]) != 4000-failed {
			t.Fatalf("metrics %v disagree with %d failures", c, failed)
		}
		return failed, codes
	}
	failed, first := run()
	_, second := run()
	// Binomial(4000, 0.1): sd 19; 5 sd either side.
	if failed < 305 || failed > 495 {
		t.Fatalf("%d of 4000 failed at ERROR_RATE=0.1", failed)
	}
	for i := range first {
		if first[i] != second[i] {
			t.Fatalf("request %d differs between two runs with the same ERROR_SEED", i)
		}
	}
}

func TestExtraLatencyDelaysEveryAnswerAndIsObserved(t *testing.T) {
	_, reg, handler := newTestApp(t, config{Version: "v2", Pod: "p", ExtraLatency: 60 * time.Millisecond})
	start := time.Now()
	get(handler, "/", nil)
	if took := time.Since(start); took < 60*time.Millisecond {
		t.Fatalf("answered in %s with EXTRA_LATENCY=60ms", took)
	}
	families, _ := reg.Gather()
	for _, family := range families {
		if family.GetName() != "request_duration_seconds" {
			continue
		}
		for _, metric := range family.GetMetric() {
			if key(metric) != "200/GET/v2" {
				continue
			}
			h := metric.GetHistogram()
			if h.GetSampleCount() != 1 || h.GetSampleSum() < 0.06 {
				t.Fatalf("histogram: count %d sum %g", h.GetSampleCount(), h.GetSampleSum())
			}
			for _, b := range h.GetBucket() {
				// 60 ms lies above 0.05 and within 0.1.
				if (b.GetUpperBound() < 0.06) != (b.GetCumulativeCount() == 0) {
					t.Fatalf("bucket le=%g holds %d", b.GetUpperBound(), b.GetCumulativeCount())
				}
			}
			return
		}
	}
	t.Fatal("no request_duration_seconds series for 200/GET/v2")
}

func TestClientThatLeavesIsCountedAs499(t *testing.T) {
	_, reg, handler := newTestApp(t, config{Version: "v1", Pod: "p", ExtraLatency: time.Second})
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	ctx, cancel := context.WithCancel(req.Context())
	cancel()
	handler.ServeHTTP(httptest.NewRecorder(), req.WithContext(ctx))
	if c := counts(t, reg); c["499/GET/v1"] != 1 {
		t.Fatalf("counts: %v", c)
	}
}

func TestReadyFailsOnceDrainingWhileLiveStaysUp(t *testing.T) {
	a, _, _ := newTestApp(t, config{Version: "v1", Pod: "p"})
	probes := a.probes()
	if code := get(probes, "/ready", nil).Code; code != 503 {
		t.Fatalf("/ready before start: %d", code)
	}
	a.ready.Store(true)
	if code := get(probes, "/ready", nil).Code; code != 200 {
		t.Fatalf("/ready when started: %d", code)
	}
	a.drain()
	rec := get(probes, "/ready", nil)
	if rec.Code != 503 || !strings.Contains(rec.Body.String(), "draining") {
		t.Fatalf("/ready when draining: %d %q", rec.Code, rec.Body.String())
	}
	if code := get(probes, "/live", nil).Code; code != 200 {
		t.Fatalf("/live when draining: %d", code)
	}
}

// TestShutdownFinishesInFlightServesDuringDelayThenCloses runs real listeners.
func TestShutdownFinishesInFlightServesDuringDelayThenCloses(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := config{Version: "v1", Pod: "p", ExtraLatency: 400 * time.Millisecond}
	local := addresses{HTTP: "127.0.0.1:0", Probe: "127.0.0.1:0", Metrics: "127.0.0.1:0"}
	inst, err := start(cfg, local, log)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	url := "http://" + inst.bound.HTTP + "/"

	var wg sync.WaitGroup
	inflight := make(chan int, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		resp, err := client.Get(url)
		if err != nil {
			inflight <- -1
			return
		}
		resp.Body.Close()
		inflight <- resp.StatusCode
	}()
	time.Sleep(100 * time.Millisecond) // the request is in flight

	done := make(chan error, 1)
	go func() { done <- inst.shutdown(500*time.Millisecond, 5*time.Second, make(chan os.Signal)) }()
	time.Sleep(50 * time.Millisecond)

	resp, err := client.Get("http://" + inst.bound.Probe + "/ready")
	if err != nil || resp.StatusCode != 503 {
		t.Fatalf("/ready during the delay: %v %v", resp, err)
	}
	resp.Body.Close()
	// A new request during the delay is still served.
	resp, err = client.Get(url)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("a new request during the delay: %v %v", resp, err)
	}
	resp.Body.Close()
	if !resp.Close {
		t.Fatal("keep-alive must be off while draining (Connection: close)")
	}
	if code := <-inflight; code != 200 {
		t.Fatalf("the in-flight request got %d", code)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if _, err := client.Get(url); err == nil {
		t.Fatal("the listener still accepts after shutdown")
	}
}
