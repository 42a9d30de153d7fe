package daemon

import (
	"context"
	"fmt"
	"io"
	"reflect"
	"sync"
	"time"

	"github.com/mailtls/mailtls/internal/config"
	"github.com/mailtls/mailtls/internal/monitor"
	"github.com/mailtls/mailtls/internal/web"
)

// workerRole rescans saved domains on their schedule and delivers their
// alerts (docs/monitoring.md). It scans as the web checker does (the
// web.scanner settings, behind the same guard) and keeps everything in the
// store, so it can run in the web role's process or in any other instance
// sharing the store: leases in the store make each rescan and each
// delivery happen once.
type workerRole struct {
	w    *monitor.Worker
	stop context.CancelFunc
	done sync.WaitGroup
	cfg  *config.Web
}

func startWorker(ctx context.Context, d *Daemon, cfg *config.Config) (role, error) {
	c := cfg.Web
	so, allow, err := webScanner(d, c)
	if err != nil {
		return nil, err
	}
	w, err := newMonitor(d, c, monitor.ServeOptions{Scanner: web.NewScanner(so)}, so.Resolver, allow)
	if err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	wctx, stop := context.WithCancel(context.Background())
	r := &workerRole{w: w, stop: stop, cfg: c}
	r.done.Add(1)
	go func() { defer r.done.Done(); w.Run(wctx) }()
	d.worker.Store(w)
	return r, nil
}

// pokeWorker wakes this process's worker after "rescan now" (a no-op
// without one: another instance's worker finds the request in the store
// at its next look).
func (d *Daemon) pokeWorker() {
	if w := d.worker.Load(); w != nil {
		w.Poke()
	}
}

// shutdown stops the worker: a scan in flight is interrupted and its
// domain stays due (monitor.Worker.Run).
func (r *workerRole) shutdown(ctx context.Context) error {
	r.stop()
	if !waitUntil(ctx, &r.done) {
		return fmt.Errorf("worker: still running after the grace period")
	}
	return nil
}

// restartNeeded: the worker is built once from web.
func (r *workerRole) restartNeeded(next *config.Config) []string {
	if next.Web != nil && !reflect.DeepEqual(next.Web, r.cfg) {
		return []string{"web (the worker)"}
	}
	return nil
}

func (r *workerRole) apply(context.Context, *config.Config) error { return nil }

func (r *workerRole) health(w io.Writer, _ time.Time) bool {
	monitorHealth(w, r.w)
	return false
}
