package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// config is everything the app reads from its environment. Each version of the app
// is one Deployment, so these settings are per version.
type config struct {
	Version string // VERSION: reported in every answer and as the `version` metric label
	Pod     string // POD_NAME (downward API), else the host name

	ErrorRate    float64       // ERROR_RATE: share of requests answered 500, in [0, 1]
	ExtraLatency time.Duration // EXTRA_LATENCY: added to every request on :8080
	ErrorSeed    uint64        // ERROR_SEED: makes the failing requests reproducible
	HasSeed      bool

	// SHUTDOWN_DELAY: after SIGTERM, keep accepting requests (with /ready failing)
	// this long before closing the listener. 0 by default: in Kubernetes a preStop
	// sleep does this before SIGTERM is sent.
	ShutdownDelay time.Duration
	// SHUTDOWN_TIMEOUT: the longest wait for in-flight requests once the listener
	// is closed; keep it below the pod's terminationGracePeriodSeconds.
	ShutdownTimeout time.Duration
}

// loadConfig reads the configuration through getenv; errors name the variable.
func loadConfig(getenv func(string) string, hostname func() (string, error)) (config, error) {
	cfg := config{
		Version:         getenv("VERSION"),
		Pod:             getenv("POD_NAME"),
		ShutdownTimeout: 20 * time.Second,
	}
	if cfg.Version == "" {
		cfg.Version = "unknown"
	}
	if cfg.Pod == "" {
		name, err := hostname()
		if err != nil {
			return cfg, fmt.Errorf("POD_NAME is not set and the host name is unknown: %w", err)
		}
		cfg.Pod = name
	}
	var err error
	if cfg.ErrorRate, err = parseRate(getenv("ERROR_RATE")); err != nil {
		return cfg, err
	}
	durations := []struct {
		name string
		into *time.Duration
	}{
		{"EXTRA_LATENCY", &cfg.ExtraLatency},
		{"SHUTDOWN_DELAY", &cfg.ShutdownDelay},
		{"SHUTDOWN_TIMEOUT", &cfg.ShutdownTimeout},
	}
	for _, d := range durations {
		if err := parseDuration(d.name, getenv(d.name), d.into); err != nil {
			return cfg, err
		}
	}
	if raw := getenv("ERROR_SEED"); raw != "" {
		seed, err := strconv.ParseUint(raw, 10, 64)
		if err != nil {
			return cfg, fmt.Errorf("ERROR_SEED: %q is not a non-negative integer", raw)
		}
		cfg.ErrorSeed, cfg.HasSeed = seed, true
	}
	return cfg, nil
}

// parseRate accepts a fraction ("0.02") or a percentage ("2%").
func parseRate(raw string) (float64, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return 0, nil
	}
	scale := 1.0
	text := raw
	if strings.HasSuffix(raw, "%") {
		scale, text = 100, strings.TrimSuffix(raw, "%")
	}
	value, err := strconv.ParseFloat(strings.TrimSpace(text), 64)
	value /= scale
	if err != nil || math.IsNaN(value) || value < 0 || value > 1 {
		return 0, fmt.Errorf("ERROR_RATE: %q is not a share of requests in [0, 1] (e.g. 0.02 or 2%%)", raw)
	}
	return value, nil
}

// parseDuration accepts a Go duration ("50ms", "1.5s") or "0"; empty keeps the default.
func parseDuration(name, raw string, into *time.Duration) error {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return nil
	}
	value, err := time.ParseDuration(raw)
	if err != nil || value < 0 {
		return fmt.Errorf("%s: %q is not a duration >= 0 like 50ms or 2s", name, raw)
	}
	*into = value
	return nil
}
