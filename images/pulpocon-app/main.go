// Command pulpocon-app is the seed's demo app: it answers with its version and pod
// name on :8080, serves probes on :8086 (/live, /ready) and Prometheus metrics on
// :9101 (http_requests_total and request_duration_seconds by code, method and
// version). ERROR_RATE and EXTRA_LATENCY make a version fail or slow on purpose.
//
// On SIGTERM it fails /ready at once, keeps serving for SHUTDOWN_DELAY, then closes
// its listener and exits once the requests in flight are answered.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// addresses are the three listen addresses (host:port; port 0 picks a free one).
type addresses struct {
	HTTP, Probe, Metrics string
}

// instance is a running app: its servers and the addresses they are bound to.
type instance struct {
	app     *app
	log     *slog.Logger
	main    *http.Server
	probe   *http.Server
	metrics *http.Server
	bound   addresses
	errs    chan error
}

// start binds the three listeners and serves them in the background.
func start(cfg config, addrs addresses, log *slog.Logger) (*instance, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	a := newApp(cfg, reg)
	mux := http.NewServeMux()
	mux.Handle("/", a.instrument(a.serveRoot))
	metricsMux := http.NewServeMux()
	metricsMux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))

	inst := &instance{
		app:     a,
		log:     log,
		main:    &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		probe:   &http.Server{Handler: a.probes(), ReadHeaderTimeout: 5 * time.Second},
		metrics: &http.Server{Handler: metricsMux, ReadHeaderTimeout: 5 * time.Second},
		errs:    make(chan error, 3),
	}
	listeners := make([]net.Listener, 0, 3)
	for _, addr := range []string{addrs.HTTP, addrs.Probe, addrs.Metrics} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, open := range listeners {
				open.Close()
			}
			return nil, fmt.Errorf("listen on %s: %w", addr, err)
		}
		listeners = append(listeners, ln)
	}
	inst.bound = addresses{
		HTTP:    listeners[0].Addr().String(),
		Probe:   listeners[1].Addr().String(),
		Metrics: listeners[2].Addr().String(),
	}
	for i, srv := range []*http.Server{inst.main, inst.probe, inst.metrics} {
		go func(srv *http.Server, ln net.Listener) {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				inst.errs <- err
			}
		}(srv, listeners[i])
	}
	a.ready.Store(true)
	log.Info("listening", "http", inst.bound.HTTP, "probe", inst.bound.Probe,
		"metrics", inst.bound.Metrics, "pod", cfg.Pod, "error_rate", cfg.ErrorRate,
		"extra_latency", cfg.ExtraLatency.String())
	return inst, nil
}

// shutdown drains: /ready fails, new requests are still served for the delay (with
// keep-alive off, so clients reconnect elsewhere), then the listener closes and the
// requests in flight finish (up to the timeout). `skip` ends the delay early.
func (inst *instance) shutdown(delay, timeout time.Duration, skip <-chan os.Signal) error {
	inst.app.drain()
	inst.main.SetKeepAlivesEnabled(false)
	inst.log.Info("draining", "delay", delay.String())
	if delay > 0 {
		timer := time.NewTimer(delay)
		select {
		case <-timer.C:
		case <-skip:
			timer.Stop()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := inst.main.Shutdown(ctx)
	if err != nil {
		err = fmt.Errorf("requests still in flight after %s: %w", timeout, err)
		inst.main.Close()
	}
	// Probes and metrics last, so a final scrape can still read the counts.
	for _, srv := range []*http.Server{inst.probe, inst.metrics} {
		short, stop := context.WithTimeout(context.Background(), time.Second)
		_ = srv.Shutdown(short)
		stop()
	}
	inst.log.Info("stopped")
	return err
}

func main() {
	addrs := addresses{}
	flag.StringVar(&addrs.HTTP, "listen-address", ":8080", "address of the HTTP server")
	flag.StringVar(&addrs.Probe, "probe-address", ":8086", "address of /live and /ready")
	flag.StringVar(&addrs.Metrics, "metrics-address", ":9101", "address of /metrics")
	flag.Parse()
	log := slog.New(slog.NewJSONHandler(os.Stdout, nil))

	cfg, err := loadConfig(os.Getenv, os.Hostname)
	if err != nil {
		log.Error("invalid configuration", "error", err.Error())
		os.Exit(2)
	}
	log = log.With("version", cfg.Version)
	// Registered before serving so no SIGTERM can be missed.
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)

	inst, err := start(cfg, addrs, log)
	if err != nil {
		log.Error("cannot start", "error", err.Error())
		os.Exit(1)
	}
	select {
	case sig := <-signals:
		log.Info("signal", "signal", sig.String())
	case err := <-inst.errs:
		log.Error("server failed", "error", err.Error())
		os.Exit(1)
	}
	if err := inst.shutdown(cfg.ShutdownDelay, cfg.ShutdownTimeout, signals); err != nil {
		log.Error("shutdown", "error", err.Error())
		os.Exit(1)
	}
}
