package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mailtls/mailtls/internal/check"
	"github.com/mailtls/mailtls/internal/config"
	"github.com/mailtls/mailtls/internal/domain"
	"github.com/mailtls/mailtls/internal/resolve"
	"github.com/mailtls/mailtls/internal/scan"
	"github.com/mailtls/mailtls/internal/smtpprobe"
	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/store/sqlstore"
	"github.com/mailtls/mailtls/internal/tlsrpt"
	"github.com/mailtls/mailtls/internal/tlsrptagg"
	"github.com/mailtls/mailtls/internal/tlsrptintake"
	"github.com/mailtls/mailtls/internal/tlsrptmail"
	"github.com/mailtls/mailtls/internal/tlsrptview"
)

const reportsUsage = `Usage: mailtls reports COMMAND [flags] ...

TLS-RPT reports (RFC 8460) in the store (docs/reports.md):
  import PATH...       read reports from .json, .json.gz, .eml, mbox files and Maildir folders
  list                 the stored reports (--domain, --days, --state)
  show ID              one stored report, its notes and every arrival (--raw: the bytes received)
  summary DOMAIN       the sums per policy type over a window
  readiness DOMAIN     is DOMAIN ready to move from testing to enforce? (scans it)
  release DOMAIN       count the reports held aside for DOMAIN (it is configured now)
  delete DOMAIN        delete every report about DOMAIN

Every command takes --store PATH (default: the data directory's mailtls.db,
the store of mailtls serve) and --json.
`

func runReports(ctx context.Context, args []string, env Env) int {
	if len(args) == 0 {
		fmt.Fprint(env.Stderr, reportsUsage)
		return ExitUsage
	}
	switch args[0] {
	case "import":
		return runReportsImport(ctx, args[1:], env)
	case "list":
		return runReportsList(ctx, args[1:], env)
	case "show":
		return runReportsShow(ctx, args[1:], env)
	case "summary":
		return runReportsSummary(ctx, args[1:], env)
	case "readiness":
		return runReportsReadiness(ctx, args[1:], env)
	case "release", "delete":
		return runReportsDomainOp(ctx, args[0], args[1:], env)
	case "help", "-h", "--help":
		fmt.Fprint(env.Stdout, reportsUsage)
		return ExitOK
	}
	fmt.Fprintf(env.Stderr, "mailtls reports: unknown command %q\n\n%s", args[0], reportsUsage)
	return ExitUsage
}

// storeFlags are the flags every reports command has.
type storeFlags struct {
	path    string
	jsonOut bool
}

func (s *storeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.path, "store", "", "the store: a SQLite file's `PATH` (default: the data directory's mailtls.db, see docs/store.md) or a postgres:// URL")
	fs.BoolVar(&s.jsonOut, "json", false, "print JSON (docs/json.md)")
}

func (s *storeFlags) file(env Env) string {
	if s.path != "" {
		return s.path
	}
	return sqlstore.DefaultPath(env.Getenv, os.Getuid())
}

// open opens the store. With create false a store that does not exist
// yet is not created: (nil, nil) means no report was ever stored there.
func (s *storeFlags) open(ctx context.Context, env Env, create bool) (*sqlstore.DB, error) {
	path := s.file(env)
	if config.IsPostgresURL(path) {
		return openStoreAt(ctx, path, env)
	}
	if !create {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
	}
	return sqlstore.Open(ctx, path, sqlstore.Options{Now: env.Now})
}

func newFlagSet(name, usage string, env Env) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	return fs
}

// writeJSONLine writes v as one line of JSON.
func writeJSONLine(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func writeJSONDoc(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// ImportLine is one line of `reports import --json`: what became of one
// report, or of one input that held none.
type ImportLine struct {
	Path     string `json:"path"`
	Message  int    `json:"message,omitempty"` // 1-based, in an mbox or Maildir
	Error    string `json:"error,omitempty"`
	Retry    bool   `json:"retry,omitempty"` // a temporary failure: import again later
	ID       int64  `json:"id,omitempty"`
	Org      string `json:"organization,omitempty"`
	ReportID string `json:"report_id,omitempty"`
	Outcome  string `json:"outcome,omitempty"` // new, duplicate, promoted
	State    string `json:"state,omitempty"`   // counted, conflict, ignored, held
	Reason   string `json:"reason,omitempty"`
	DKIM     string `json:"dkim,omitempty"`
}

const importUsage = `Usage: mailtls reports import [flags] PATH...

Reads TLS-RPT reports from files, each told by its content: a report
(.json, .json.gz, gzip or zip), a mail (.eml), an mbox file, or a Maildir
folder (cur/ and new/). Reports are stored deduplicated by organisation and
report-id; a second report with the same key and other content is kept as
a conflict.

Mail is checked for a DKIM signature by the reporting domain (RFC 8460 §3;
keys looked up with --resolver). An import is your own act, so a mail
without any signature is counted and marked as imported by you; a mail
whose signature fails is kept aside as ignored unless --accept-unverified.
With --domain (repeatable), reports about other domains are held aside.

Exit status: 0 when every input was read, 1 when an input held no report or
could not be read (the others are still imported), 2 on a usage error.

Flags:
`

func runReportsImport(ctx context.Context, args []string, env Env) int {
	fs := newFlagSet("mailtls reports import", importUsage, env)
	var sf storeFlags
	sf.register(fs)
	var nc netConfig
	nc.register(fs)
	var domains multiFlag
	fs.Var(&domains, "domain", "count only reports about this `DOMAIN` (repeatable); reports about others are held aside")
	acceptUnverified := fs.Bool("accept-unverified", false, "count mail whose DKIM signature fails or cannot be checked too (it is marked so)")
	pos, code, ok := parseInterleaved(fs, args, env)
	if !ok {
		return code
	}
	if len(pos) == 0 {
		fs.Usage()
		return ExitUsage
	}
	configured := map[string]bool{}
	for _, d := range domains {
		n, _, err := domain.Parse(d)
		if err != nil {
			fmt.Fprintf(env.Stderr, "mailtls reports import: --domain %q: %v\n", d, err)
			return ExitUsage
		}
		configured[n] = true
	}
	// A resolver is needed for the DKIM keys of mail only: without one
	// (no --resolver, no resolv.conf) signed mail says so.
	var res resolve.Resolver
	if c, _, _, err := nc.tools(env); err == nil {
		res = c
	} else if len(nc.resolvers) > 0 || len(nc.connectTo) > 0 || nc.caFile != "" {
		fmt.Fprintf(env.Stderr, "mailtls reports import: %v\n", err)
		return ExitUsage
	}
	db, err := sf.open(ctx, env, true)
	if err != nil {
		fmt.Fprintf(env.Stderr, "mailtls reports import: %v\n", err)
		return 1
	}
	defer db.Close()
	in := &tlsrptintake.Intake{Store: db, Resolver: res}
	if len(configured) > 0 {
		in.Configured = func(d string) bool { return configured[d] }
	}
	imp := &importer{in: in, env: env, json: sf.jsonOut, accept: *acceptUnverified, timeout: nc.timeout}
	for _, p := range pos {
		imp.path(ctx, p)
	}
	if !sf.jsonOut {
		fmt.Fprintf(env.Stdout, "%d report(s): %d new, %d duplicate, %d promoted; %d counted, %d conflict, %d ignored, %d held; %d input(s) refused\n",
			imp.reports, imp.outcomes[store.OutcomeNew], imp.outcomes[store.OutcomeDuplicate], imp.outcomes[store.OutcomePromoted],
			imp.states[store.ReportCounted], imp.states[store.ReportConflict], imp.states[store.ReportIgnored], imp.states[store.ReportHeld], imp.failed)
	}
	if imp.failed > 0 {
		return 1
	}
	return ExitOK
}

// importer reads files into the intake and prints a line per report.
type importer struct {
	in       *tlsrptintake.Intake
	env      Env
	json     bool
	accept   bool
	timeout  time.Duration
	reports  int
	failed   int
	outcomes map[store.ReportOutcome]int
	states   map[store.ReportState]int
}

func (im *importer) src(name string) tlsrptintake.Source {
	return tlsrptintake.Source{Channel: tlsrptintake.ChannelFile, FileName: name, AdminImport: true, AcceptUnverified: im.accept}
}

func (im *importer) path(ctx context.Context, p string) {
	st, err := os.Stat(p)
	if err != nil {
		im.refused(ImportLine{Path: p}, err)
		return
	}
	if st.IsDir() {
		_, errCur := os.Stat(filepath.Join(p, "cur"))
		_, errNew := os.Stat(filepath.Join(p, "new"))
		if errCur != nil && errNew != nil {
			im.refused(ImportLine{Path: p}, errors.New("a folder that is not a Maildir (no cur/ or new/)"))
			return
		}
		n := 0
		err := tlsrptmail.Maildir(os.DirFS(p), 0, func(name string, raw []byte, err error) error {
			n++
			im.mail(ctx, ImportLine{Path: filepath.Join(p, name), Message: n}, raw, err)
			return ctx.Err()
		})
		if err != nil {
			im.refused(ImportLine{Path: p}, err)
		}
		return
	}
	if !st.Mode().IsRegular() {
		im.refused(ImportLine{Path: p}, errors.New("not a regular file"))
		return
	}
	f, err := os.Open(p)
	if err != nil {
		im.refused(ImportLine{Path: p}, err)
		return
	}
	defer f.Close()
	head := make([]byte, 512)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		im.refused(ImportLine{Path: p}, err)
		return
	}
	name := filepath.Base(p)
	switch tlsrptmail.Detect(head) {
	case tlsrptmail.KindReport:
		// One byte more than the parser takes, so that it says "too large".
		data, err := io.ReadAll(io.LimitReader(f, tlsrpt.DefaultMaxCompressed+1))
		if err != nil {
			im.refused(ImportLine{Path: p}, err)
			return
		}
		r, err := im.in.Body(ctx, data, im.src(name))
		if err != nil {
			im.refused(ImportLine{Path: p}, err)
			return
		}
		im.result(ImportLine{Path: p}, r)
	case tlsrptmail.KindMbox:
		i := 0
		err := tlsrptmail.Mbox(f, 0, func(index int, raw []byte, err error) error {
			i++
			im.mail(ctx, ImportLine{Path: p, Message: i}, raw, err)
			return ctx.Err()
		})
		if err != nil {
			im.refused(ImportLine{Path: p}, err)
		}
	default:
		raw, err := io.ReadAll(io.LimitReader(f, tlsrptmail.DefaultMaxMessage+1))
		if err == nil && len(raw) > tlsrptmail.DefaultMaxMessage {
			err = fmt.Errorf("%w: more than %d bytes", tlsrptmail.ErrTooLarge, tlsrptmail.DefaultMaxMessage)
		}
		im.mail(ctx, ImportLine{Path: p}, raw, err)
	}
}

func (im *importer) mail(ctx context.Context, line ImportLine, raw []byte, err error) {
	if err != nil {
		im.refused(line, err)
		return
	}
	dctx, cancel := context.WithTimeout(ctx, im.timeout)
	defer cancel()
	rs, err := im.in.Mail(dctx, raw, im.src(filepath.Base(line.Path)))
	for _, r := range rs {
		im.result(line, r)
	}
	if err != nil {
		im.refused(line, err)
	}
}

func (im *importer) result(line ImportLine, r tlsrptintake.Result) {
	if im.outcomes == nil {
		im.outcomes, im.states = map[store.ReportOutcome]int{}, map[store.ReportState]int{}
	}
	im.reports++
	im.outcomes[r.Outcome]++
	im.states[r.Stored.State]++
	line.ID, line.Org, line.ReportID = int64(r.Stored.ID), r.Report.OrganizationName, r.Report.ReportID
	line.Outcome, line.State, line.Reason = string(r.Outcome), string(r.Stored.State), r.Stored.Reason
	switch {
	case r.DKIM == nil:
		line.DKIM = tlsrptintake.DKIMNotApplicable
	case r.Unsigned:
		line.DKIM = string(r.DKIM.Status) + " (counted: imported by you)"
	default:
		line.DKIM = string(r.DKIM.Status)
	}
	if im.json {
		writeJSONLine(im.env.Stdout, line)
		return
	}
	where := line.Path
	if line.Message > 0 {
		where += fmt.Sprintf(" #%d", line.Message)
	}
	state := line.State
	if line.Reason != "" {
		state += " (" + line.Reason + ")"
	}
	fmt.Fprintf(im.env.Stdout, "%s: %s %s %s: %s, %s; dkim %s\n", where, line.Org, line.ReportID,
		r.Report.Start.UTC().Format(time.DateOnly), line.Outcome, state, line.DKIM)
}

func (im *importer) refused(line ImportLine, err error) {
	im.failed++
	line.Error = err.Error()
	line.Retry = errors.Is(err, tlsrptintake.ErrTemporary)
	if im.json {
		writeJSONLine(im.env.Stdout, line)
		return
	}
	where := line.Path
	if line.Message > 0 {
		where += fmt.Sprintf(" #%d", line.Message)
	}
	fmt.Fprintf(im.env.Stderr, "%s: %v\n", where, err)
}

const listUsage = `Usage: mailtls reports list [flags]

Lists the stored reports, oldest first: one line each, or with --json one
JSON object per line (docs/json.md).

Flags:
`

func runReportsList(ctx context.Context, args []string, env Env) int {
	fs := newFlagSet("mailtls reports list", listUsage, env)
	var sf storeFlags
	sf.register(fs)
	dom := fs.String("domain", "", "only reports with a policy for `DOMAIN`")
	days := fs.Int("days", 0, "only reports overlapping the last `N` whole UTC days (0: all)")
	var states multiFlag
	fs.Var(&states, "state", "only reports in `STATE`: counted, conflict, ignored, held (repeatable)")
	pos, code, ok := parseInterleaved(fs, args, env)
	if !ok {
		return code
	}
	if len(pos) != 0 || *days < 0 {
		fs.Usage()
		return ExitUsage
	}
	q := store.TLSRPTQuery{Limit: 500}
	if *dom != "" {
		n, _, err := domain.Parse(*dom)
		if err != nil {
			fmt.Fprintf(env.Stderr, "mailtls reports list: --domain: %v\n", err)
			return ExitUsage
		}
		q.Domain = n
	}
	if *days > 0 {
		w := tlsrptview.LastDays(env.Now(), *days)
		q.From, q.To = w.From, w.To
	}
	for _, s := range states {
		switch st := store.ReportState(s); st {
		case store.ReportCounted, store.ReportConflict, store.ReportIgnored, store.ReportHeld:
			q.States = append(q.States, st)
		default:
			fmt.Fprintf(env.Stderr, "mailtls reports list: --state %q: use counted, conflict, ignored or held\n", s)
			return ExitUsage
		}
	}
	db, err := sf.open(ctx, env, false)
	if err != nil {
		fmt.Fprintf(env.Stderr, "mailtls reports list: %v\n", err)
		return 1
	}
	if db == nil {
		if !sf.jsonOut {
			fmt.Fprintf(env.Stdout, "no reports: there is no store at %s yet\n", sf.file(env))
		}
		return ExitOK
	}
	defer db.Close()
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	if !sf.jsonOut {
		fmt.Fprintln(tw, "ID\tDAY\tORGANIZATION\tREPORT-ID\tPOLICIES\tSESSIONS\tFAILED\tSTATE\tCHANNEL\tDKIM")
	}
	n := 0
	for {
		page, next, err := db.ListTLSRPTReports(ctx, q)
		if err != nil {
			fmt.Fprintf(env.Stderr, "mailtls reports list: %v\n", err)
			return 1
		}
		for _, s := range page {
			it := tlsrptview.NewItem(s)
			n++
			if sf.jsonOut {
				writeJSONLine(env.Stdout, it)
				continue
			}
			var pols []string
			var sess, failed int64
			for _, p := range it.Policies {
				pols = append(pols, string(p.Type)+":"+p.Domain)
				sess += p.Successful + p.Failed
				failed += p.Failed
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", it.ID, it.Start.Format(time.DateOnly), clipText(it.Organization, 30),
				clipText(it.ReportID, 40), strings.Join(pols, " "), sess, failed, it.State, it.Channel, it.DKIM)
		}
		if next == "" {
			break
		}
		q.After = next
	}
	if !sf.jsonOut {
		tw.Flush()
		fmt.Fprintf(env.Stdout, "%d report(s)\n", n)
	}
	return ExitOK
}

// clipText shortens s for a table column (report text can be long).
func clipText(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return '?'
		}
		return r
	}, s)
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

// ShowDocument is `reports show --json`: the list entry, the parsed report
// and, with --raw, the bytes as first received.
type ShowDocument struct {
	tlsrptview.Item
	Report *tlsrpt.Report `json:"report"`
	Raw    string         `json:"raw,omitempty"`
}

func runReportsShow(ctx context.Context, args []string, env Env) int {
	fs := newFlagSet("mailtls reports show", "Usage: mailtls reports show [flags] ID\n\nShows one stored report (ID from reports list).\n\nFlags:\n", env)
	var sf storeFlags
	sf.register(fs)
	raw := fs.Bool("raw", false, "print the bytes as first received instead (a mail, gzip or JSON)")
	pos, code, ok := parseInterleaved(fs, args, env)
	if !ok {
		return code
	}
	id, err := strconv.ParseInt(strings.TrimPrefix(strings.Join(pos, ""), "#"), 10, 64)
	if len(pos) != 1 || err != nil || id <= 0 {
		fmt.Fprintln(env.Stderr, "mailtls reports show: give one report ID (a number from reports list)")
		return ExitUsage
	}
	db, err := sf.open(ctx, env, false)
	if err == nil && db == nil {
		err = store.ErrNotFound
	}
	var s store.StoredTLSRPT
	if err == nil {
		defer db.Close()
		s, err = db.GetTLSRPTReport(ctx, store.ReportID(id), *raw)
	}
	if errors.Is(err, store.ErrNotFound) {
		fmt.Fprintf(env.Stderr, "mailtls reports show: no report %d in %s\n", id, sf.file(env))
		return 1
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "mailtls reports show: %v\n", err)
		return 1
	}
	if *raw && !sf.jsonOut {
		if s.RawPruned || s.Raw == nil {
			fmt.Fprintf(env.Stderr, "mailtls reports show: the raw bytes of report %d are gone (retention); the parsed report is kept\n", id)
			return 1
		}
		env.Stdout.Write(s.Raw)
		return ExitOK
	}
	it := tlsrptview.NewItem(s)
	if sf.jsonOut {
		doc := ShowDocument{Item: it, Report: s.Report}
		if *raw {
			doc.Raw = string(s.Raw)
		}
		writeJSONDoc(env.Stdout, doc)
		return ExitOK
	}
	w := env.Stdout
	fmt.Fprintf(w, "report %d: %s, report-id %s\n", it.ID, it.Organization, it.ReportID)
	fmt.Fprintf(w, "  range: %s to %s (UTC)\n", it.Start.Format(time.RFC3339), it.End.Format(time.RFC3339))
	if it.ContactInfo != "" {
		fmt.Fprintf(w, "  contact: %s\n", it.ContactInfo)
	}
	state := string(it.State)
	if it.Reason != "" {
		state += ": " + it.Reason
	}
	fmt.Fprintf(w, "  state: %s\n", state)
	for _, p := range it.Policies {
		fmt.Fprintf(w, "  policy %s %s: %d successful, %d failed", p.Type, orNone(p.Domain), p.Successful, p.Failed)
		if p.DetailsFailed != p.Failed {
			fmt.Fprintf(w, " (the failure details add up to %d)", p.DetailsFailed)
		}
		fmt.Fprintln(w)
		if len(p.MXPatterns) > 0 {
			fmt.Fprintf(w, "    mx patterns: %s\n", strings.Join(p.MXPatterns, ", "))
		}
		for _, l := range p.PolicyString {
			fmt.Fprintf(w, "    | %s\n", l)
		}
	}
	for i, p := range s.Report.Policies {
		for _, f := range p.Failures {
			fmt.Fprintf(w, "  failure (policy %d): %d × %s on %s", i+1, f.FailedSessions, f.ResultType, orNone(f.ReceivingMXHostname))
			if f.SendingMTAIP != "" {
				fmt.Fprintf(w, " from %s", f.SendingMTAIP)
			}
			if f.FailureReasonCode != "" {
				fmt.Fprintf(w, ": %s", clipText(f.FailureReasonCode, 200))
			}
			fmt.Fprintln(w)
		}
	}
	for _, n := range it.Notes {
		fmt.Fprintf(w, "  note %s: %s\n", n.Code, n.Text)
	}
	for _, rc := range it.Receipts {
		fmt.Fprintf(w, "  received %s by %s", rc.ReceivedAt.Format(time.RFC3339), rc.Channel)
		for _, kv := range [][2]string{{"from", rc.ClientIP}, {"dkim", rc.DKIM}, {"signed by", rc.DKIMDomain}, {"file", rc.FileName}, {"message-id", rc.MessageID}} {
			if kv[1] != "" {
				fmt.Fprintf(w, ", %s %s", kv[0], kv[1])
			}
		}
		fmt.Fprintln(w)
	}
	return ExitOK
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func runReportsSummary(ctx context.Context, args []string, env Env) int {
	fs := newFlagSet("mailtls reports summary", "Usage: mailtls reports summary [flags] DOMAIN\n\nSums the counted reports about DOMAIN per policy type over the last --days whole UTC days (sts and tlsa are never added: Microsoft reports a DANE domain's sessions under both).\n\nFlags:\n", env)
	var sf storeFlags
	sf.register(fs)
	days := fs.Int("days", 14, "the window: the last `N` whole UTC days")
	pos, code, ok := parseInterleaved(fs, args, env)
	if !ok {
		return code
	}
	if len(pos) != 1 || *days <= 0 {
		fs.Usage()
		return ExitUsage
	}
	name, _, err := domain.Parse(pos[0])
	if err != nil {
		fmt.Fprintf(env.Stderr, "mailtls reports summary: %v\n", err)
		return ExitUsage
	}
	w := tlsrptview.LastDays(env.Now(), *days)
	db, err := sf.open(ctx, env, false)
	if err != nil {
		fmt.Fprintf(env.Stderr, "mailtls reports summary: %v\n", err)
		return 1
	}
	var sum *tlsrptview.Summary
	if db == nil {
		sum = &tlsrptview.Summary{SchemaVersion: tlsrptview.SchemaVersion, Domain: name, Window: w, Types: []tlsrptview.TypeSums{},
			States: map[store.ReportState]int{}, Daily: map[tlsrpt.PolicyType][]tlsrptagg.DayTotals{}}
	} else {
		defer db.Close()
		if sum, err = (&tlsrptview.View{Store: db, Now: env.Now}).Summary(ctx, name, w); err != nil {
			fmt.Fprintf(env.Stderr, "mailtls reports summary: %v\n", err)
			return 1
		}
	}
	if sf.jsonOut {
		writeJSONDoc(env.Stdout, sum)
		return ExitOK
	}
	out := env.Stdout
	fmt.Fprintf(out, "%s, %s to %s (UTC, %d days)\n", name, w.From.Format(time.DateOnly), w.To.AddDate(0, 0, -1).Format(time.DateOnly), *days)
	if len(sum.Types) == 0 {
		fmt.Fprintln(out, "  no counted reports in the window")
	}
	for _, t := range sum.Types {
		fmt.Fprintf(out, "  %s: %d sessions, %d successful, %d failed, from %d report(s) on %d day(s)\n", t.Type, t.Successful+t.Failed, t.Successful, t.Failed, t.Reports, t.Days)
		if t.DetailsFailed != t.Failed {
			fmt.Fprintf(out, "    the failure details add up to %d (senders' summaries and details disagree)\n", t.DetailsFailed)
		}
		for _, kv := range sortedCounts(t.ByResult) {
			fmt.Fprintf(out, "    %d × %s\n", kv.n, kv.k)
		}
		for _, kv := range sortedCounts(t.ByMX) {
			fmt.Fprintf(out, "    %d failed on %s\n", kv.n, kv.k)
		}
		for _, kv := range sortedOrgs(t.Organizations) {
			fmt.Fprintf(out, "    reporter %s: %d successful, %d failed\n", clipText(kv.k, 60), kv.t.Successful, kv.t.Failed)
		}
	}
	fmt.Fprintf(out, "  per domain (each session once): %d sessions, %d failed\n", sum.Sessions, sum.Failed)
	for _, st := range []store.ReportState{store.ReportConflict, store.ReportIgnored, store.ReportHeld} {
		if n := sum.States[st]; n > 0 {
			what := map[store.ReportState]string{store.ReportConflict: "in conflict (same key, other content; not counted)",
				store.ReportIgnored: "ignored (no valid DKIM signature)", store.ReportHeld: "held (the domain is not configured)"}[st]
			fmt.Fprintf(out, "  %d report(s) %s\n", n, what)
		}
	}
	return ExitOK
}

type countKV[K ~string] struct {
	k K
	n int64
}

func sortedCounts[K ~string](m map[K]int64) []countKV[K] {
	var out []countKV[K]
	for k, n := range m {
		out = append(out, countKV[K]{k, n})
	}
	slices.SortFunc(out, func(a, b countKV[K]) int { return cmp.Or(cmp.Compare(b.n, a.n), cmp.Compare(a.k, b.k)) })
	return out
}

type orgKV struct {
	k string
	t tlsrptagg.OrgTotals
}

func sortedOrgs(m map[string]tlsrptagg.OrgTotals) []orgKV {
	var out []orgKV
	for k, t := range m {
		out = append(out, orgKV{k, t})
	}
	slices.SortFunc(out, func(a, b orgKV) int { return cmp.Compare(a.k, b.k) })
	return out
}

// readinessFlags are the thresholds of the verdict.
type readinessFlags struct {
	days        int
	minOrgs     int
	minSessions int64
}

func (r *readinessFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&r.days, "window", 14, "TLS-RPT readiness: the window in whole UTC `DAYS`")
	fs.IntVar(&r.minOrgs, "min-organizations", tlsrptagg.DefaultMinOrgs, "TLS-RPT readiness: reporting organisations needed")
	fs.Int64Var(&r.minSessions, "min-sessions", tlsrptagg.DefaultMinSessions, "TLS-RPT readiness: sessions needed (TLS sessions, not messages)")
}

func (r *readinessFlags) thresholds() (tlsrptagg.Thresholds, error) {
	if r.days < 1 || r.days > 366 || r.minOrgs < 1 || r.minSessions < 1 {
		return tlsrptagg.Thresholds{}, errors.New("--window must be 1 to 366 days, --min-organizations and --min-sessions at least 1")
	}
	return tlsrptagg.Thresholds{Window: time.Duration(r.days) * 24 * time.Hour, MinOrgs: r.minOrgs, MinSessions: r.minSessions}, nil
}

// readiness computes the verdict for name from the store at sf and a
// scan report r taken now.
func readiness(ctx context.Context, env Env, sf *storeFlags, name string, r *check.Report, th tlsrptagg.Thresholds) (*tlsrptagg.Verdict, *sqlstore.DB, error) {
	now := env.Now()
	cur := tlsrptagg.Current{PolicyID: r.PolicyID, Scan: tlsrptagg.FromCheck(r, now)}
	if r.Policy != nil {
		cur.Policy = r.Policy
	}
	db, err := sf.open(ctx, env, false)
	if err != nil {
		return nil, nil, err
	}
	if db == nil {
		return tlsrptagg.Readiness(tlsrptagg.Input{Domain: name, Now: now, Current: cur, Summary: &tlsrptagg.Summary{}, Thresholds: th}), nil, nil
	}
	v, err := (&tlsrptview.View{Store: db, Now: env.Now}).Readiness(ctx, name, cur, th)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return v, db, nil
}

// scanForReadiness scans name with SMTP probes, as promote does.
func scanForReadiness(ctx context.Context, env Env, nc *netConfig, ehlo string, smtpWait time.Duration, name string) (*check.Report, error) {
	res, fetcher, dialer, err := nc.tools(env)
	if err != nil {
		return nil, err
	}
	s := &scan.Scanner{Resolver: res, Fetcher: fetcher, Dialer: dialer, Now: env.Now,
		Prober: &smtpprobe.Prober{Dialer: dialer, Roots: fetcher.Roots, Now: env.Now, EHLO: ehlo,
			ConnectTimeout: smtpWait, BannerTimeout: smtpWait, CommandTimeout: smtpWait, HandshakeTimeout: smtpWait}}
	dctx, cancel := context.WithTimeout(ctx, nc.timeout)
	defer cancel()
	return check.Evaluate(s.Scan(dctx, name), env.Now()), nil
}

// ReadinessDocument is `reports readiness --json`.
type ReadinessDocument struct {
	SchemaVersion int `json:"schema_version"`
	*tlsrptagg.Verdict
	Overrides []OverrideRecord `json:"overrides,omitempty"`
}

// OverrideRecord is a past `policy promote --force` past the verdict.
type OverrideRecord struct {
	At       time.Time `json:"at"`
	PolicyID string    `json:"policy_id"`
	Status   string    `json:"status"`
	Reasons  []string  `json:"reasons,omitempty"`
}

const readinessUsage = `Usage: mailtls reports readiness [flags] DOMAIN

Is DOMAIN ready to move its MTA-STS policy from testing to enforce? Scans
the domain now (policy, MX hosts, STARTTLS and certificates) and weighs the
counted TLS-RPT reports about the policy served now (docs/reports.md).

Exit status: 0 ready, 1 not ready, 3 not enough data, 2 on a usage error.

Flags:
`

func runReportsReadiness(ctx context.Context, args []string, env Env) int {
	fs := newFlagSet("mailtls reports readiness", readinessUsage, env)
	var sf storeFlags
	sf.register(fs)
	var nc netConfig
	nc.register(fs)
	var rf readinessFlags
	rf.register(fs)
	smtpWait := fs.Duration("smtp-timeout", 0, "time limit for each SMTP phase (default 10s each, 20s for the banner)")
	ehlo := fs.String("ehlo", "", "the `NAME` to send in EHLO (default: the local address literal)")
	pos, code, ok := parseInterleaved(fs, args, env)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		fs.Usage()
		return ExitUsage
	}
	name, _, err := domain.Parse(pos[0])
	if err != nil {
		fmt.Fprintf(env.Stderr, "mailtls reports readiness: %v\n", err)
		return ExitUsage
	}
	th, err := rf.thresholds()
	if err != nil {
		fmt.Fprintf(env.Stderr, "mailtls reports readiness: %v\n", err)
		return ExitUsage
	}
	r, err := scanForReadiness(ctx, env, &nc, *ehlo, *smtpWait, name)
	if err != nil {
		fmt.Fprintf(env.Stderr, "mailtls reports readiness: %v\n", err)
		return ExitUsage
	}
	v, db, err := readiness(ctx, env, &sf, name, r, th)
	if err != nil {
		fmt.Fprintf(env.Stderr, "mailtls reports readiness: %v\n", err)
		return 1
	}
	doc := ReadinessDocument{SchemaVersion: tlsrptview.SchemaVersion, Verdict: v}
	if db != nil {
		defer db.Close()
		ovs, err := db.ListPromoteOverrides(ctx, name)
		if err != nil {
			fmt.Fprintf(env.Stderr, "mailtls reports readiness: %v\n", err)
			return 1
		}
		for _, o := range ovs {
			doc.Overrides = append(doc.Overrides, OverrideRecord{At: o.At, PolicyID: o.PolicyID, Status: o.Status, Reasons: o.Reasons})
		}
	}
	if sf.jsonOut {
		writeJSONDoc(env.Stdout, doc)
	} else {
		writeVerdict(env.Stdout, v)
		for _, o := range doc.Overrides {
			fmt.Fprintf(env.Stdout, "  on record: promoted with --force on %s past a %s verdict (policy id %s)\n", o.At.Format(time.RFC3339), o.Status, o.PolicyID)
		}
	}
	switch v.Status {
	case tlsrptagg.Ready:
		return ExitOK
	case tlsrptagg.NotReady:
		return ExitFindings
	}
	return ExitUndetermined
}

// writeVerdict prints a readiness verdict as text.
func writeVerdict(w io.Writer, v *tlsrptagg.Verdict) {
	fmt.Fprintf(w, "%s: %s (policy id %s, reports %s to %s)\n", v.Domain, strings.ReplaceAll(string(v.Status), "-", " "), orNone(v.PolicyID),
		v.From.Format(time.DateOnly), v.To.AddDate(0, 0, -1).Format(time.DateOnly))
	for _, r := range v.Reasons {
		fmt.Fprintf(w, "  - %s\n", r.Text)
	}
	for _, r := range v.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", r.Text)
	}
	orgs := "none"
	if len(v.Organizations) > 0 {
		orgs = strings.Join(v.Organizations, ", ")
	}
	fmt.Fprintf(w, "  evidence: %d session(s), %d failed, %d report(s) from %s", v.Sessions, v.Failed, len(v.Evidence), orgs)
	if !v.Since.IsZero() {
		fmt.Fprintf(w, " since %s", v.Since.Format(time.DateOnly))
	}
	fmt.Fprintln(w)
	for _, e := range v.Failures {
		fmt.Fprintf(w, "  failure %s: %d × %s (%s) on %s: %s\n", e.Label, e.Count, e.ResultType, e.Type, e.MX, e.Why)
	}
	fmt.Fprintf(w, "  next: %s\n", v.Next)
}

func runReportsDomainOp(ctx context.Context, op string, args []string, env Env) int {
	usage := map[string]string{
		"release": "Usage: mailtls reports release [flags] DOMAIN\n\nCounts the reports about DOMAIN that were held aside because the domain was not configured.\n\nFlags:\n",
		"delete":  "Usage: mailtls reports delete [flags] DOMAIN\n\nDeletes every stored report about DOMAIN, and the record of forced promotions.\n\nFlags:\n",
	}[op]
	fs := newFlagSet("mailtls reports "+op, usage, env)
	var sf storeFlags
	sf.register(fs)
	pos, code, ok := parseInterleaved(fs, args, env)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		fs.Usage()
		return ExitUsage
	}
	name, _, err := domain.Parse(pos[0])
	if err != nil {
		fmt.Fprintf(env.Stderr, "mailtls reports %s: %v\n", op, err)
		return ExitUsage
	}
	db, err := sf.open(ctx, env, false)
	if err != nil {
		fmt.Fprintf(env.Stderr, "mailtls reports %s: %v\n", op, err)
		return 1
	}
	n := 0
	if db != nil {
		defer db.Close()
		if op == "release" {
			n, err = db.ReleaseHeldTLSRPT(ctx, name)
		} else {
			n, err = db.DeleteTLSRPTDomain(ctx, name)
		}
		if err != nil {
			fmt.Fprintf(env.Stderr, "mailtls reports %s: %v\n", op, err)
			return 1
		}
	}
	if sf.jsonOut {
		writeJSONLine(env.Stdout, map[string]any{"domain": name, map[string]string{"release": "released", "delete": "deleted"}[op]: n})
	} else if op == "release" {
		fmt.Fprintf(env.Stdout, "%s: %d held report(s) now count\n", name, n)
	} else {
		fmt.Fprintf(env.Stdout, "%s: deleted %d report(s)\n", name, n)
	}
	return ExitOK
}
