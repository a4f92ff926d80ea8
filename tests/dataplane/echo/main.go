// Command echo is the tests' tiny HTTP server for the real node: GET / answers
// "<VERSION> <pod name>", GET /ready answers 200, and SIGTERM stops it after in-flight
// requests finish. It logs one line per request, so `kubectl logs` has something to show;
// `echo env NAME` prints an environment variable (the image has no shell for `kubectl exec`).
package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "env" {
		fmt.Println(os.Getenv(os.Args[2]))
		return
	}
	version := os.Getenv("VERSION")
	pod, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		log.Printf("%s %s", r.Method, r.URL.Path)
		fmt.Fprintf(w, "%s %s\n", version, pod)
	})
	mux.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	})
	srv := &http.Server{Addr: ":8080", Handler: mux}
	go func() {
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
		<-stop
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	log.Printf("echo %s listening on :8080", version)
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
