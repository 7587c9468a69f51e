package ops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves the operations endpoints:
//
//	/about/health  200 "ok" when the component is connected and the key store
//	               loaded (like Jicofo's), else 503 with the reason
//	/readyz        the same, and 503 once the service is shutting down
//	/livez         200 while the process follows the focus
//	/metrics       Prometheus text format, from the Tracker's own registry
func (t *Tracker) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /about/health", probe(t.Health))
	mux.Handle("GET /readyz", probe(t.Ready))
	mux.Handle("GET /livez", probe(t.Live))
	mux.Handle("GET /metrics", promhttp.HandlerFor(t.reg, promhttp.HandlerOpts{
		Registry:          t.reg,
		ErrorLog:          slogPrinter{t.log},
		EnableOpenMetrics: true,
	}))
	return mux
}

func probe(check func() (bool, string)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ok, reason := check()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintln(w, reason)
	})
}

type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Error("metrics: " + fmt.Sprint(v...)) }

// Listen opens the HTTP address (host:port; port 0 picks a free one).
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for health and metrics on %s: %w (pick a free address with --http)", addr, err)
	}
	return ln, nil
}

// Serve serves h on ln until ctx ends, then shuts down, letting requests in
// flight finish for up to five seconds.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}
