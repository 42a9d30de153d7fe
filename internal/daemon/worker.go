package daemon

import (
	"context"
	"fmt"
	"io"
	"reflect"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

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
	d.reg.MustRegister(workerCollector{w})
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
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q, err := r.w.Queue(ctx)
	if err != nil {
		fmt.Fprintf(w, "monitor: queue unknown: %v\n", err)
		return true
	}
	fmt.Fprintf(w, "monitor: queue: %d rescan(s) due, the oldest %s late; %d alert(s) due, the oldest %s late\n",
		q.DueRescans, q.RescanLag.Truncate(time.Second), q.DueDeliveries, q.DeliveryLag.Truncate(time.Second))
	return false
}

// workerCollector publishes the worker's counters and the shared queues
// on /metrics. Labels take fixed values only. The queues are read from the
// store at each scrape (two indexed queries, bounded to 5s); a scrape
// when the store does not answer has no queue series.
type workerCollector struct{ w *monitor.Worker }

var (
	workerScansDesc = prometheus.NewDesc("mailtls_worker_scans_total",
		"Scans of saved domains by this instance, by result (stored, failed, interrupted by a stop, lease_lost to another instance).", []string{"result"}, nil)
	workerDeliveriesDesc = prometheus.NewDesc("mailtls_worker_deliveries_total",
		"Alert delivery attempts by this instance, by result (delivered, retried later, abandoned).", []string{"result"}, nil)
	workerTakeoversDesc = prometheus.NewDesc("mailtls_worker_lease_takeovers_total",
		"Domains (lease=domain) and alerts (lease=message) this instance claimed after another instance's lease on them ran out: that instance died or stalled.", []string{"lease"}, nil)
	workerDueDesc = prometheus.NewDesc("mailtls_worker_queue_due",
		"Rescans (queue=rescans) and alert deliveries (queue=deliveries) due and not held by any instance, in the shared store.", []string{"queue"}, nil)
	workerLagDesc = prometheus.NewDesc("mailtls_worker_queue_lag_seconds",
		"How late the oldest due rescan or alert delivery is (0 when none waits): workers falling behind, or none running.", []string{"queue"}, nil)
)

func (c workerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{workerScansDesc, workerDeliveriesDesc, workerTakeoversDesc, workerDueDesc, workerLagDesc} {
		ch <- d
	}
}

func (c workerCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.w.Stats()
	counter := func(d *prometheus.Desc, v int64, label string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), label)
	}
	counter(workerScansDesc, s.Scanned, "stored")
	counter(workerScansDesc, s.Failed, "failed")
	counter(workerScansDesc, s.Interrupted, "interrupted")
	counter(workerScansDesc, s.LeaseLost, "lease_lost")
	counter(workerDeliveriesDesc, s.Delivered, "delivered")
	counter(workerDeliveriesDesc, s.Retried, "retried")
	counter(workerDeliveriesDesc, s.Abandoned, "abandoned")
	counter(workerTakeoversDesc, s.Rescued, "domain")
	counter(workerTakeoversDesc, s.MessagesRescued, "message")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q, err := c.w.Queue(ctx)
	if err != nil {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, label string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, label)
	}
	gauge(workerDueDesc, float64(q.DueRescans), "rescans")
	gauge(workerDueDesc, float64(q.DueDeliveries), "deliveries")
	gauge(workerLagDesc, q.RescanLag.Seconds(), "rescans")
	gauge(workerLagDesc, q.DeliveryLag.Seconds(), "deliveries")
}
