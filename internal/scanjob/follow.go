package scanjob

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"golang.org/x/time/rate"

	"github.com/mailtls/mailtls/internal/store"
)

// Shared-store defaults (Config.Heartbeat, Stale, Poll).
const (
	DefaultHeartbeat = 5 * time.Second
	DefaultStale     = 30 * time.Second
	DefaultPoll      = 2 * time.Second
	// noticeQueue bounds the notifications waiting for the follower; one
	// that does not fit is dropped and recovered by the next poll.
	noticeQueue = 4096
	// dbTimeout bounds each write of a scan's progress.
	dbTimeout = 10 * time.Second
)

// begin files a new local job as live in the shared store. A live scan
// of the same domain and options on another instance is returned instead
// (to be joined); one whose owner stopped is interrupted first.
func (m *Manager) begin(ctx context.Context, j *Job, now time.Time) (*store.AnonScan, error) {
	row := store.AnonScan{ID: j.id, Domain: j.req.Domain, SMTP: j.req.SMTP, State: string(Queued), Owner: m.cfg.Instance,
		Heartbeat: now.UTC(), Created: j.created}
	lim := store.AnonLimits{Client: j.req.Client, Burst: m.cfg.PerClientBurst, Concurrent: m.cfg.PerClientConcurrent, Now: now}
	if m.cfg.PerClientRate > 0 && m.cfg.PerClientRate != rate.Inf {
		lim.Rate = float64(m.cfg.PerClientRate)
	}
	for range 2 {
		old, err := m.shared.s.BeginAnonScan(ctx, row, lim)
		if err == nil {
			return nil, nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return nil, err
		}
		if old != nil && !old.Heartbeat.Before(now.Add(-m.cfg.Stale)) {
			return old, nil
		}
		// The live scan ended meanwhile, or its owner died: once more.
		if _, err := m.shared.s.InterruptAnonScans(ctx, now.Add(-m.cfg.Stale), now, now.Add(m.cfg.TTL), interrupted); err != nil {
			return nil, err
		}
	}
	return nil, errors.New("scanjob: a scan of this domain is starting elsewhere; retry")
}

// remoteJob returns the followed job of a live row of another instance,
// registering it.
func (m *Manager) remoteJob(ctx context.Context, row *store.AnonScan) *Job {
	m.mu.Lock()
	j := m.remote[row.ID]
	if j == nil {
		j = &Job{id: row.ID, req: Request{Domain: row.Domain, SMTP: row.SMTP}, created: row.Created,
			state: State(row.State), started: row.Started, changed: make(chan struct{})}
		m.remote[row.ID] = j
		m.metrics.Followed.Set(float64(len(m.remote)))
	}
	m.mu.Unlock()
	m.refresh(ctx, j, "get", true)
	return j
}

// refresh reads what j's store row has beyond what j shows: the events
// after the last one it has (so a lost notification is recovered and none
// is added twice), and, when withState, its state; a final row ends the
// job. via labels the delivery for the lag metric.
func (m *Manager) refresh(ctx context.Context, j *Job, via string, withState bool) {
	j.mu.Lock()
	after, final := len(j.events), j.state.Final()
	j.mu.Unlock()
	if final {
		m.unfollow(j)
		return
	}
	evs, err := m.shared.events(ctx, j.id, after, m.cfg.MaxEvents-after)
	if err != nil {
		m.log.Warn("could not read a scan's progress", "scan", j.id, "error", err)
		return
	}
	if len(evs) > 0 {
		now := time.Now()
		for _, e := range j.addRemote(evs) {
			// The writer's wall clock: across hosts their skew adds in.
			m.metrics.NotifyLag.WithLabelValues(via).Observe(max(0, now.Sub(e.written).Seconds()))
		}
	}
	if !withState {
		return
	}
	row, err := m.shared.s.GetAnonScan(ctx, j.id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		m.endRemote(j, &Record{ID: j.id, Domain: j.req.Domain, SMTP: j.req.SMTP, State: Failed, Created: j.created,
			Finished: m.cfg.Now().UTC(), Expires: m.cfg.Now().UTC(), Error: "the scan is no longer available"})
	case err != nil:
		m.log.Warn("could not read a scan", "scan", j.id, "error", err)
	case row.Final:
		rec, err := m.shared.record(ctx, row)
		if err != nil {
			m.log.Warn("could not read a finished scan", "scan", j.id, "error", err)
			return
		}
		m.endRemote(j, rec)
	case row.Heartbeat.Before(m.cfg.Now().Add(-m.cfg.Stale)):
		// Its instance stopped: shown as interrupted now; a janitor
		// files it so.
		now := m.cfg.Now().UTC()
		j.mu.Lock()
		evs := j.events
		j.mu.Unlock()
		m.endRemote(j, &Record{ID: j.id, Domain: j.req.Domain, SMTP: j.req.SMTP, State: Failed, Created: j.created,
			Started: row.Started, Finished: now, Expires: now.Add(m.cfg.TTL), Events: evs, Error: interrupted})
	default:
		j.setRemoteState(State(row.State), row.Started)
	}
}

// endRemote makes a followed job final with rec and stops following it.
func (m *Manager) endRemote(j *Job, rec *Record) {
	j.finishRemote(rec)
	m.unfollow(j)
}

func (m *Manager) unfollow(j *Job) {
	m.mu.Lock()
	if m.remote[j.id] == j {
		delete(m.remote, j.id)
		m.metrics.Followed.Set(float64(len(m.remote)))
	}
	m.mu.Unlock()
}

// follow listens for notifications and polls the followed jobs, and
// keeps the heartbeat of this instance's live scans, until the manager
// closes.
func (m *Manager) follow() {
	notices := make(chan store.AnonNotice, noticeQueue)
	m.wg.Go(func() { m.listen(notices) })
	poll := time.NewTicker(m.cfg.Poll)
	defer poll.Stop()
	beat := time.NewTicker(m.cfg.Heartbeat)
	defer beat.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case n := <-notices:
			if n.ID == "" {
				m.refreshAll("poll")
				continue
			}
			m.mu.Lock()
			j := m.remote[n.ID]
			m.mu.Unlock()
			if j == nil {
				continue // nobody here watches it
			}
			j.mu.Lock()
			have := len(j.events)
			j.mu.Unlock()
			if n.Seq > 0 && n.Seq <= have {
				continue // read already (a poll or an earlier notice)
			}
			ctx, cancel := context.WithTimeout(m.ctx, dbTimeout)
			m.refresh(ctx, j, "notify", n.Seq == 0)
			cancel()
		case <-poll.C:
			m.refreshAll("poll")
		case <-beat.C:
			m.mu.Lock()
			ids := make([]string, 0, len(m.live))
			for id := range m.live {
				ids = append(ids, id)
			}
			m.mu.Unlock()
			ctx, cancel := context.WithTimeout(m.ctx, dbTimeout)
			if err := m.shared.s.HeartbeatAnonScans(ctx, m.cfg.Instance, ids, m.cfg.Now().UTC()); err != nil && m.ctx.Err() == nil {
				m.log.Warn("could not keep this instance's scans alive in the store", "error", err)
			}
			cancel()
		}
	}
}

// refreshAll reads every followed scan again.
func (m *Manager) refreshAll(via string) {
	m.mu.Lock()
	js := make([]*Job, 0, len(m.remote))
	for _, j := range m.remote {
		js = append(js, j)
	}
	m.mu.Unlock()
	for _, j := range js {
		ctx, cancel := context.WithTimeout(m.ctx, dbTimeout)
		m.refresh(ctx, j, via, true)
		cancel()
	}
}

// listen feeds notifications to notices, reconnecting with a growing
// pause; without notifications (SQLite) the follower only polls.
func (m *Manager) listen(notices chan<- store.AnonNotice) {
	pause := time.Second
	for m.ctx.Err() == nil {
		err := m.shared.s.ListenAnonScans(m.ctx, func() {
			pause = time.Second
			m.listening.Store(true)
			// Notices sent while no connection listened are lost: read
			// every followed scan again.
			select {
			case notices <- store.AnonNotice{}:
			default:
			}
		}, func(n store.AnonNotice) {
			select {
			case notices <- n:
			default:
				m.metrics.NoticesDropped.Inc() // the next poll reads it
			}
		})
		m.listening.Store(false)
		if errors.Is(err, store.ErrNoListen) || m.ctx.Err() != nil {
			return
		}
		m.metrics.ListenErrors.Inc()
		m.log.Warn("the scan notification connection failed; polling until it is back", "error", err, "retry_in", pause)
		select {
		case <-m.ctx.Done():
		case <-time.After(pause):
		}
		pause = min(2*pause, 30*time.Second)
	}
}

// publish writes event e of a local job to the shared store.
func (m *Manager) publish(j *Job, e Event) {
	body, err := json.Marshal(e)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(m.ctx), dbTimeout)
		err = m.shared.s.AddAnonEvent(ctx, j.id, store.AnonEvent{Seq: e.Seq, Body: body, Written: time.Now()})
		cancel()
	}
	if err != nil {
		m.metrics.PublishErrors.Inc()
		m.log.Warn("could not share a scan's progress", "scan", j.id, "seq", e.Seq, "error", err)
	}
}
