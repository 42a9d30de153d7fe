// Package tlsrptintake takes TLS-RPT reports in (RFC 8460 §3, §5): every
// channel — HTTPS POST, SMTP, IMAP pull, file import — hands what it
// received to one Intake, which reads it with the one parser
// (internal/tlsrpt, internal/tlsrptmail for mail), judges a mailed
// report's DKIM signature, decides whether the report counts, is ignored
// or is held, and stores it with its provenance (internal/store), where
// it is deduplicated by (organization-name, report-id) across channels.
package tlsrptintake

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/mailtls/mailtls/internal/domain"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/tlsrpt"
	"github.com/mailtls/mailtls/internal/tlsrptmail"
)

// Channels: where a report arrived (store.ReportReceipt.Channel).
const (
	ChannelHTTPS = "https"
	ChannelSMTP  = "smtp"
	ChannelIMAP  = "imap"
	ChannelFile  = "file"
)

// DKIMNotApplicable is the receipt's DKIM value for a report that did not
// come by mail (HTTPS, a JSON file): there is no signature to check.
const DKIMNotApplicable = "n/a"

// Errors of the intake, for errors.Is. Each returned error wraps one of
// them, or one of tlsrpt's and tlsrptmail's (ErrTooLarge, ErrBomb,
// ErrNotReport, ErrMalformed, ErrNoReport, ErrNotMessage).
var (
	// ErrTemporary: the report could not be judged or stored just now (a
	// DKIM key lookup failed temporarily, the store failed); nothing was
	// stored, and the sender should try again.
	ErrTemporary = errors.New("tlsrptintake: temporary failure, retry later")
)

// Refused reports whether err means the input is not a report that can
// be read (too large, a bomb, not a report, broken): sending it again
// does not help.
func Refused(err error) bool {
	return errors.Is(err, tlsrpt.ErrTooLarge) || errors.Is(err, tlsrpt.ErrBomb) || errors.Is(err, tlsrpt.ErrNotReport) ||
		errors.Is(err, tlsrpt.ErrMalformed) || errors.Is(err, tlsrptmail.ErrTooLarge) || errors.Is(err, tlsrptmail.ErrNoReport) ||
		errors.Is(err, tlsrptmail.ErrNotMessage)
}

// Source is where and how something arrived.
type Source struct {
	Channel    string
	ReceivedAt time.Time // zero: the store's now
	ClientIP   string
	FileName   string
	// AdminImport: the administrator imported it (mailtls reports import).
	// A mail without a DKIM signature then counts, marked as the admin's
	// own act; a mail whose signature fails is still ignored unless
	// AcceptUnverified.
	AdminImport      bool
	AcceptUnverified bool
}

// Intake is the one way in for reports. It is safe for concurrent use.
type Intake struct {
	Store store.TLSRPT
	// Resolver looks up DKIM keys (RFC 6376 §3.6.2.2); nil refuses mail
	// that carries a signature with a temporary error.
	Resolver resolve.Resolver
	// Configured reports whether reports about domain may count; nil
	// means every domain. A report none of whose policies is about a
	// configured domain is held aside (anyone can send a report about
	// any domain).
	Configured func(domain string) bool
	// Limits for mail (and, inside, for each report).
	Limits  *tlsrptmail.Limits
	Metrics *Metrics
	Log     *slog.Logger
}

// Result is what became of one report.
type Result struct {
	Report  *tlsrpt.Report
	Stored  store.StoredTLSRPT
	Outcome store.ReportOutcome
	// DKIM is the verdict on a mailed report (nil for other reports).
	DKIM *tlsrptmail.DKIMResult
	// Unsigned: a mail without DKIM signature that counts because the
	// administrator imported it.
	Unsigned bool
}

// State is the stored report's state after this arrival.
func (r Result) State() store.ReportState { return r.Stored.State }

func (in *Intake) log() *slog.Logger {
	if in.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return in.Log
}

// Body takes in a bare report: gzip, zip or JSON, told by content
// (HTTPS POST, a .json or .json.gz file).
func (in *Intake) Body(ctx context.Context, data []byte, src Source) (Result, error) {
	var lim *tlsrpt.Limits
	if in.Limits != nil {
		lim = in.Limits.Report
	}
	rep, err := tlsrpt.Parse(bytes.NewReader(data), &tlsrpt.Options{Limits: lim, Hints: tlsrpt.Hints{FileName: src.FileName}})
	if err != nil {
		in.Metrics.received(src.Channel, "refused")
		return Result{}, err
	}
	return in.store(ctx, rep, data, src, store.ReportReceipt{DKIM: DKIMNotApplicable}, "", nil, false)
}

// Mail takes in a report mail (RFC 8460 §5.3) as received: every report
// it carries is read; RFC 8460 §3 says a mailed report counts only with a
// valid DKIM signature by the reporting domain, without l=, so one that
// lacks it is stored aside as ignored, visible with the reason. A mail
// that holds no report is refused (tlsrptmail.ErrNoReport, with the
// reason for each part). When a DKIM key could not be looked up just now
// nothing is stored and the error wraps ErrTemporary.
func (in *Intake) Mail(ctx context.Context, raw []byte, src Source) ([]Result, error) {
	m, err := tlsrptmail.Extract(bytes.NewReader(raw), in.Limits)
	if err != nil {
		in.Metrics.received(src.Channel, "refused")
		return nil, err
	}
	res := in.Resolver
	if res == nil {
		res = noResolver{}
	}
	verdicts := tlsrptmail.Verify(ctx, raw, m, res)
	reps := m.Parsed()
	for _, v := range verdicts {
		in.Metrics.dkim(v.Status)
		if v.Status == tlsrptmail.DKIMTempError && !(src.AdminImport && src.AcceptUnverified) {
			in.Metrics.received(src.Channel, "temporary")
			return nil, fmt.Errorf("%w: %s", ErrTemporary, v.Reason)
		}
	}
	var out []Result
	for i, rep := range reps {
		v := verdicts[i]
		rc := store.ReportReceipt{DKIM: string(v.Status), DKIMDomain: v.Domain, MessageID: m.Envelope.MessageID}
		ignore, unsigned := "", false
		switch {
		case v.Counts():
		case src.AdminImport && v.Status == tlsrptmail.DKIMNone:
			unsigned = true // the admin's own act
		case src.AdminImport && src.AcceptUnverified:
			unsigned = true
		default:
			ignore = v.Ignored()
		}
		r, err := in.store(ctx, rep, raw, src, rc, ignore, v, unsigned)
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
	return out, nil
}

// configured reports whether any policy of rep is about a configured
// domain.
func (in *Intake) configured(rep *tlsrpt.Report) bool {
	if in.Configured == nil {
		return true
	}
	for _, p := range rep.Policies {
		if p.Domain != "" && in.Configured(domain.Canonical(p.Domain)) {
			return true
		}
	}
	return false
}

func (in *Intake) store(ctx context.Context, rep *tlsrpt.Report, raw []byte, src Source, rc store.ReportReceipt, ignore string, dkim *tlsrptmail.DKIMResult, unsigned bool) (Result, error) {
	rc.Channel, rc.ReceivedAt, rc.ClientIP, rc.FileName = src.Channel, src.ReceivedAt, src.ClientIP, src.FileName
	if unsigned {
		rc.DKIM += "; imported by the administrator"
	}
	n := store.NewTLSRPTReport{Report: rep, Raw: raw, Receipt: rc, Ignore: ignore, Hold: !in.configured(rep)}
	st, outcome, err := in.Store.AddTLSRPTReport(ctx, n)
	if err != nil {
		in.Metrics.received(src.Channel, "temporary")
		in.log().Error("storing a TLS-RPT report failed", "channel", src.Channel, "error", err)
		return Result{}, fmt.Errorf("%w: storing the report: %v", ErrTemporary, err)
	}
	res := Result{Report: rep, Stored: st, Outcome: outcome, DKIM: dkim, Unsigned: unsigned}
	in.Metrics.stored(src.Channel, res, in.Configured)
	in.log().Info("TLS-RPT report", "channel", src.Channel, "outcome", string(outcome), "state", string(st.State), "id", int64(st.ID))
	return res, nil
}

// noResolver answers every lookup with an error: without a resolver no
// DKIM key can be found, which is temporary, never "no key".
type noResolver struct{}

func (noResolver) Lookup(_ context.Context, name string, _ uint16) *resolve.Answer {
	return &resolve.Answer{Name: name, Type: "TXT", Status: resolve.StatusError, Error: "no DNS resolver configured"}
}
