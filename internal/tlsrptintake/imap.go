package tlsrptintake

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailtls/mailtls/internal/tlsrptmail"
)

// Defaults of the IMAP pull.
const (
	DefaultIMAPInterval  = 10 * time.Minute
	DefaultIMAPKeyword   = "$TLSRPTProcessed"
	DefaultIMAPPerRound  = 500
	DefaultIMAPRoundTime = 5 * time.Minute
)

// IMAPConfig is one mailbox to fetch report mail from (an rua mailto:
// address whose mailbox the admin already has).
type IMAPConfig struct {
	Server string // host:port
	// StartTLS upgrades a plain connection (RFC 3501 §6.2.1); otherwise
	// TLS starts at once (RFC 8314 implicit TLS). Plain text is never
	// used: the password would travel in clear.
	StartTLS           bool
	Username, Password string
	Mailbox            string // default INBOX
	Interval           time.Duration
	// Keyword is set on every message taken (default $TLSRPTProcessed),
	// and messages that carry it are not fetched again. MoveTo, if set,
	// moves them to that mailbox too (the server must offer MOVE).
	Keyword string
	MoveTo  string
	// TLS is the client configuration (roots; ServerName defaults to the
	// server's host).
	TLS *tls.Config
	// Dial connects (default net.Dialer); tests point it at the lab.
	Dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	MaxPerRound int
	RoundTime   time.Duration // bounds one round: connect, fetch, store, mark
	MaxMessage  int64         // default tlsrptmail.DefaultMaxMessage
}

// IMAPStatus is what the last rounds did.
type IMAPStatus struct {
	LastAttempt time.Time
	LastSuccess time.Time
	LastError   string // of the last round; "" when it succeeded
	Processed   int    // messages taken and marked, since start
	Deferred    int    // messages left for the next round (a temporary failure), in the last round
}

// IMAPPuller fetches report mail from one mailbox periodically with
// github.com/emersion/go-imap/v2. Each round takes the messages without
// the keyword, hands each to the intake, and marks it: reports, mail that
// holds none, mail too large. A message whose DKIM key or storing failed
// just now is left unmarked for the next round. Taking a message twice
// (a round cut short between storing and marking) only adds a receipt:
// the store deduplicates.
type IMAPPuller struct {
	in  *Intake
	cfg IMAPConfig

	mu     sync.Mutex
	status IMAPStatus
}

// NewIMAPPuller makes a puller; Run it.
func NewIMAPPuller(in *Intake, cfg IMAPConfig) *IMAPPuller {
	if cfg.Mailbox == "" {
		cfg.Mailbox = "INBOX"
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultIMAPInterval
	}
	if cfg.Keyword == "" {
		cfg.Keyword = DefaultIMAPKeyword
	}
	if cfg.MaxPerRound <= 0 {
		cfg.MaxPerRound = DefaultIMAPPerRound
	}
	if cfg.RoundTime <= 0 {
		cfg.RoundTime = DefaultIMAPRoundTime
	}
	if cfg.MaxMessage <= 0 {
		cfg.MaxMessage = tlsrptmail.DefaultMaxMessage
	}
	if cfg.Dial == nil {
		d := &net.Dialer{Timeout: 30 * time.Second}
		cfg.Dial = d.DialContext
	}
	return &IMAPPuller{in: in, cfg: cfg}
}

// Name says which mailbox this is, for logs and /healthz.
func (p *IMAPPuller) Name() string {
	return fmt.Sprintf("%s@%s/%s", p.cfg.Username, p.cfg.Server, p.cfg.Mailbox)
}

// Status returns what the last rounds did.
func (p *IMAPPuller) Status() IMAPStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

// Run does a round now and then every Interval until ctx ends.
func (p *IMAPPuller) Run(ctx context.Context) {
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := p.Round(ctx); err != nil && ctx.Err() == nil {
			p.in.log().Warn("IMAP round failed; retrying at the next", "mailbox", p.Name(), "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RoundStats counts one round.
type RoundStats struct {
	Found     int // messages without the keyword
	Processed int // taken and marked
	Refused   int // of those, mail without a report or too large
	Deferred  int // left for the next round
}

// Round takes the new messages once.
func (p *IMAPPuller) Round(ctx context.Context) (st RoundStats, err error) {
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("tlsrptintake: panic in an IMAP round: %v", r)
		}
		p.mu.Lock()
		p.status.LastAttempt = start
		p.status.Processed += st.Processed
		p.status.Deferred = st.Deferred
		if err != nil {
			p.status.LastError = err.Error()
		} else {
			p.status.LastError, p.status.LastSuccess = "", start
		}
		p.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(ctx, p.cfg.RoundTime)
	defer cancel()
	c, err := p.connect(ctx)
	if err != nil {
		return st, err
	}
	defer c.Close()
	// imapclient has no contexts: closing the connection ends every
	// command in flight when the round's time is up.
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()

	if err := c.Login(p.cfg.Username, p.cfg.Password).Wait(); err != nil {
		return st, fmt.Errorf("IMAP login as %s: %w", p.cfg.Username, err)
	}
	sel, err := c.Select(p.cfg.Mailbox, nil).Wait()
	if err != nil {
		return st, fmt.Errorf("IMAP SELECT %s: %w", p.cfg.Mailbox, err)
	}
	kw := imap.Flag(p.cfg.Keyword)
	// Keywords compare without case (RFC 3501 §2.3.2).
	if !slices.ContainsFunc(sel.PermanentFlags, func(f imap.Flag) bool { return f == imap.FlagWildcard || strings.EqualFold(string(f), string(kw)) }) {
		return st, fmt.Errorf("the IMAP server does not let %s keep the keyword %s on messages (PERMANENTFLAGS %v): messages could not be marked as processed", p.cfg.Username, kw, sel.PermanentFlags)
	}
	if p.cfg.MoveTo != "" && !c.Caps().Has(imap.CapMove) {
		return st, fmt.Errorf("the IMAP server does not offer MOVE (RFC 6851), needed for move_to")
	}
	found, err := c.UIDSearch(&imap.SearchCriteria{NotFlag: []imap.Flag{kw, imap.FlagDeleted}}, nil).Wait()
	if err != nil {
		return st, fmt.Errorf("IMAP SEARCH: %w", err)
	}
	uids := found.AllUIDs()
	slices.Sort(uids)
	st.Found = len(uids)
	if len(uids) > p.cfg.MaxPerRound {
		uids = uids[:p.cfg.MaxPerRound]
	}
	sizes, err := p.sizes(c, uids)
	if err != nil {
		return st, err
	}
	for _, uid := range uids {
		if ctx.Err() != nil {
			return st, ctx.Err()
		}
		mark, refused, err := p.take(ctx, c, uid, sizes[uid])
		if err != nil {
			return st, err
		}
		if !mark {
			st.Deferred++
			continue
		}
		if err := p.mark(c, uid, kw); err != nil {
			return st, err
		}
		st.Processed++
		if refused {
			st.Refused++
		}
	}
	st.Deferred += st.Found - len(uids)
	if err := c.Logout().Wait(); err != nil && ctx.Err() == nil {
		p.in.log().Debug("IMAP LOGOUT", "mailbox", p.Name(), "error", err)
	}
	return st, nil
}

// connect dials and starts TLS, implicitly or with STARTTLS.
func (p *IMAPPuller) connect(ctx context.Context) (*imapclient.Client, error) {
	host, _, err := net.SplitHostPort(p.cfg.Server)
	if err != nil {
		return nil, err
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if p.cfg.TLS != nil {
		tc = p.cfg.TLS.Clone()
	}
	if tc.ServerName == "" {
		tc.ServerName = host
	}
	conn, err := p.cfg.Dial(ctx, "tcp", p.cfg.Server)
	if err != nil {
		return nil, fmt.Errorf("IMAP connect to %s: %w", p.cfg.Server, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	opts := &imapclient.Options{TLSConfig: tc}
	if p.cfg.StartTLS {
		c, err := imapclient.NewStartTLS(conn, opts)
		if err != nil {
			return nil, fmt.Errorf("IMAP STARTTLS with %s: %w", p.cfg.Server, err)
		}
		return c, nil
	}
	tconn := tls.Client(conn, tc)
	if err := tconn.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("IMAP TLS with %s: %w", p.cfg.Server, err)
	}
	c := imapclient.New(tconn, opts)
	if err := c.WaitGreeting(); err != nil {
		c.Close()
		return nil, fmt.Errorf("IMAP greeting from %s: %w", p.cfg.Server, err)
	}
	return c, nil
}

// sizes fetches RFC822.SIZE of the messages.
func (p *IMAPPuller) sizes(c *imapclient.Client, uids []imap.UID) (map[imap.UID]int64, error) {
	out := map[imap.UID]int64{}
	if len(uids) == 0 {
		return out, nil
	}
	cmd := c.Fetch(imap.UIDSetNum(uids...), &imap.FetchOptions{UID: true, RFC822Size: true})
	for {
		msg := cmd.Next()
		if msg == nil {
			break
		}
		var uid imap.UID
		var size int64 = -1
		for item := msg.Next(); item != nil; item = msg.Next() {
			switch it := item.(type) {
			case imapclient.FetchItemDataUID:
				uid = it.UID
			case imapclient.FetchItemDataRFC822Size:
				size = it.Size
			}
		}
		if uid != 0 {
			out[uid] = size
		}
	}
	if err := cmd.Close(); err != nil {
		return nil, fmt.Errorf("IMAP FETCH RFC822.SIZE: %w", err)
	}
	return out, nil
}

// take fetches one message (without setting \Seen) and hands it to the
// intake. mark says whether it is done with; refused, that it held no
// report or was too large.
func (p *IMAPPuller) take(ctx context.Context, c *imapclient.Client, uid imap.UID, size int64) (mark, refused bool, err error) {
	if size > p.cfg.MaxMessage {
		p.in.Metrics.received(ChannelIMAP, "refused")
		p.in.log().Warn("IMAP message too large; marked without reading it", "mailbox", p.Name(), "uid", uid, "size", size)
		return true, true, nil
	}
	cmd := c.Fetch(imap.UIDSetNum(uid), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
	var raw []byte
	tooLarge := false
	for msg := cmd.Next(); msg != nil; msg = cmd.Next() {
		for item := msg.Next(); item != nil; item = msg.Next() {
			if body, ok := item.(imapclient.FetchItemDataBodySection); ok && body.Literal != nil {
				// The size announced may lie: read at most one byte more
				// than the cap.
				b, rerr := io.ReadAll(io.LimitReader(body.Literal, p.cfg.MaxMessage+1))
				if rerr != nil {
					cmd.Close()
					return false, false, fmt.Errorf("IMAP FETCH of UID %d: %w", uid, rerr)
				}
				if int64(len(b)) > p.cfg.MaxMessage {
					tooLarge = true
				} else {
					raw = b
				}
			}
		}
	}
	if err := cmd.Close(); err != nil {
		return false, false, fmt.Errorf("IMAP FETCH of UID %d: %w", uid, err)
	}
	if tooLarge {
		p.in.Metrics.received(ChannelIMAP, "refused")
		return true, true, nil
	}
	if raw == nil {
		// Gone meanwhile (expunged by another client).
		return false, false, nil
	}
	_, err = p.in.Mail(ctx, raw, Source{Channel: ChannelIMAP, FileName: fmt.Sprintf("imap://%s/%s;UID=%d", p.cfg.Server, p.cfg.Mailbox, uid)})
	switch {
	case err == nil:
		return true, false, nil
	case errors.Is(err, ErrTemporary):
		p.in.log().Info("IMAP message deferred to the next round", "mailbox", p.Name(), "uid", uid, "error", err)
		return false, false, nil
	case Refused(err):
		p.in.log().Info("IMAP message holds no TLS-RPT report; marked", "mailbox", p.Name(), "uid", uid, "error", err)
		return true, true, nil
	}
	return false, false, err
}

// mark sets the keyword on uid and moves it when MoveTo is set.
func (p *IMAPPuller) mark(c *imapclient.Client, uid imap.UID, kw imap.Flag) error {
	set := imap.UIDSetNum(uid)
	if err := c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{kw}}, nil).Close(); err != nil {
		return fmt.Errorf("IMAP STORE %s on UID %d: %w", kw, uid, err)
	}
	if p.cfg.MoveTo != "" {
		if _, err := c.Move(set, p.cfg.MoveTo).Wait(); err != nil {
			return fmt.Errorf("IMAP MOVE of UID %d to %s: %w", uid, p.cfg.MoveTo, err)
		}
	}
	return nil
}
