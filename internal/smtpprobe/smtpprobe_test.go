package smtpprobe_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailtls/mailtls/internal/dial"
	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/smtpprobe"
	"github.com/mailtls/mailtls/internal/webpki"
)

func prober(l *lab.Lab, timeout time.Duration) *smtpprobe.Prober {
	return &smtpprobe.Prober{Dialer: l.Dialer(), Roots: l.CA.Pool(), EHLO: "scanner.example.test",
		ConnectTimeout: timeout, BannerTimeout: timeout, CommandTimeout: timeout, HandshakeTimeout: timeout}
}

// TestFailureClasses: each kind of MX behaviour is classified in one place
// (STS-SND-8, MISC-14, STS-SND-9).
func TestFailureClasses(t *testing.T) {
	l := lab.New(t)
	now := time.Now()
	tests := []struct {
		name    string
		opts    lab.SMTPOptions
		class   smtpprobe.Class
		cert    webpki.Code // expected certificate problem; "" for a clean chain
		version string
	}{
		{name: "good", opts: lab.SMTPOptions{Mode: lab.SMTPStartTLS}, version: "TLS 1.3"},
		{name: "no STARTTLS", opts: lab.SMTPOptions{Mode: lab.SMTPNoStartTLS}, class: smtpprobe.STARTTLSNotOffered},
		{name: "421 banner", opts: lab.SMTPOptions{Mode: lab.SMTPBanner421}, class: smtpprobe.BannerTemporary},
		{name: "554 banner", opts: lab.SMTPOptions{Mode: lab.SMTPBanner554}, class: smtpprobe.BannerPermanent},
		{name: "STARTTLS refused", opts: lab.SMTPOptions{Mode: lab.SMTPStartTLSRefused}, class: smtpprobe.STARTTLSRefused},
		{name: "handshake fails", opts: lab.SMTPOptions{Mode: lab.SMTPHandshakeFails}, class: smtpprobe.TLSHandshake},
		{name: "TLS 1.0 only", opts: lab.SMTPOptions{Mode: lab.SMTPStartTLS, MaxVersion: tls.VersionTLS10}, version: "TLS 1.0"},
		{name: "wrong name", opts: lab.SMTPOptions{Mode: lab.SMTPStartTLS, Cert: l.CA.MustIssue(t, lab.LeafOptions{DNSNames: []string{"other.example.test"}})}, cert: webpki.NameMismatch},
		{name: "expired", opts: lab.SMTPOptions{Mode: lab.SMTPStartTLS, Cert: l.CA.MustIssue(t, lab.LeafOptions{DNSNames: []string{"expired.example.test"}, NotBefore: now.Add(-90 * 24 * time.Hour), NotAfter: now.Add(-time.Hour)})}, cert: webpki.Expired},
		{name: "self-signed", opts: lab.SMTPOptions{Mode: lab.SMTPStartTLS, Cert: l.CA.MustIssue(t, lab.LeafOptions{DNSNames: []string{"self-signed.example.test"}, SelfSigned: true})}, cert: webpki.SelfSigned},
		{name: "untrusted", opts: lab.SMTPOptions{Mode: lab.SMTPStartTLS, Cert: l.Untrusted.MustIssue(t, lab.LeafOptions{DNSNames: []string{"untrusted.example.test"}})}, cert: webpki.Untrusted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := strings.ReplaceAll(tt.name, " ", "-") + ".example.test"
			addr := l.NextAddr()
			srv := l.MustMX(t, host, []netip.Addr{addr}, tt.opts)
			r := prober(l, 2*time.Second).Probe(context.Background(), host, addr)
			if r.Class != tt.class {
				t.Fatalf("class %q (%s), want %q; transcript %q", r.Class, r.Error, tt.class, r.Transcript)
			}
			if tt.version == "" {
				tt.version = "TLS 1.3"
			}
			if tt.class == "" {
				if r.TLS == nil || r.TLS.Version != tt.version || !r.STARTTLS {
					t.Fatalf("TLS version %v, want %s", r.TLS != nil && r.TLS.Version != "", tt.version)
				}
				if tt.cert == "" && !r.TLS.Verdict.OK() || tt.cert != "" && !r.TLS.Verdict.Has(tt.cert) {
					t.Errorf("verdict %+v, want problem %q", r.TLS.Verdict, tt.cert)
				}
				if len(r.TLS.DER) == 0 {
					t.Error("the chain is not kept for DANE")
				}
				if chain, err := r.TLS.Certificates(); err != nil || len(chain) != len(r.TLS.DER) {
					t.Errorf("Certificates: %v", err)
				}
			}
			if r.Error == "" && r.Class != "" || r.Timings.Total <= 0 {
				t.Errorf("error %q timings %+v", r.Error, r.Timings)
			}
			srv.WaitIdle(context.Background())
			sessions := srv.Sessions()
			if len(sessions) != 1 {
				t.Fatalf("%d sessions", len(sessions))
			}
			for _, c := range sessions[0].Commands {
				if verb := strings.Fields(c)[0]; verb == "MAIL" || verb == "RCPT" || verb == "DATA" {
					t.Errorf("the probe sent %q; it must never send mail", c)
				}
			}
			if tt.class == "" {
				if sessions[0].ServerName != host || !slices.Contains(sessions[0].Commands, "QUIT") {
					t.Errorf("SNI %q, commands %q: want SNI = MX host and a polite QUIT", sessions[0].ServerName, sessions[0].Commands)
				}
			}
		})
	}
}

// TestHostileServersAreBounded: servers that never answer, stall after the
// banner or stream an endless banner cost bounded time and memory.
func TestHostileServersAreBounded(t *testing.T) {
	l := lab.New(t)
	// A port the lab holds without listening: refused, and nothing else can
	// take it meanwhile.
	refusedAddr := l.Dialer().Target("", l.MustRefusedAddr(t, 25), 25)
	tests := []struct {
		name  string
		mode  lab.SMTPMode
		class smtpprobe.Class
	}{
		{"no banner", lab.SMTPNoBanner, smtpprobe.BannerTimeout},
		{"stall after banner", lab.SMTPStallAfterBanner, smtpprobe.EHLOFailed},
		{"endless banner line", lab.SMTPEndlessBanner, smtpprobe.BannerMalformed},
		{"endless multi-line banner", lab.SMTPEndlessMultiline, smtpprobe.BannerMalformed},
		{"refused", -1, smtpprobe.ConnectRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := strings.ReplaceAll(tt.name, " ", "-") + ".example.test"
			addr := l.NextAddr()
			if tt.mode >= 0 {
				l.MustMX(t, host, []netip.Addr{addr}, lab.SMTPOptions{Mode: tt.mode})
			} else if err := l.MapAddr(refusedAddr, addr, 25); err != nil {
				t.Fatal(err)
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			r := prober(l, 300*time.Millisecond).Probe(context.Background(), host, addr)
			took := time.Since(start)
			runtime.ReadMemStats(&after)
			if r.Class != tt.class {
				t.Errorf("class %q (%s), want %q", r.Class, r.Error, tt.class)
			}
			if took > 2*time.Second {
				t.Errorf("took %v; the phase timeouts should bound it", took)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 8<<20 {
				t.Errorf("allocated %d bytes; reads are capped at %d", grew, smtpprobe.MaxRead)
			}
			if len(r.Transcript) > 60 {
				t.Errorf("transcript of %d lines is not capped", len(r.Transcript))
			}
		})
	}
}

// TestPlainTextAfterSTARTTLS: a server that answers STARTTLS with 220 and
// then speaks plain text never gets to TLS; the probe says so at once
// instead of waiting out the handshake timeout (RFC 3207 §4: after 220
// the client starts the TLS negotiation, so anything else is not TLS).
func TestPlainTextAfterSTARTTLS(t *testing.T) {
	l := lab.New(t)
	// script serves a session on a pipe: banner, EHLO with STARTTLS, then
	// after the STARTTLS command what after does.
	script := func(after func(s net.Conn)) *dial.Dialer {
		return &dial.Dialer{Net: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, s := net.Pipe()
			go func() {
				defer s.Close()
				s.SetDeadline(time.Now().Add(20 * time.Second))
				r := bufio.NewReader(s)
				io.WriteString(s, "220 mx ESMTP\r\n")
				r.ReadString('\n') // EHLO
				io.WriteString(s, "250-mx\r\n250 STARTTLS\r\n")
				r.ReadString('\n') // STARTTLS
				after(s)
			}()
			return c, nil
		}}
	}
	tests := []struct {
		name   string
		dialer *dial.Dialer
		want   string // in the error
	}{
		{name: "plain line in the same write as the 220 (lab server)", want: "plain SMTP"},
		{name: "short text after the ClientHello, then silence", want: "OK", dialer: script(func(s net.Conn) {
			io.WriteString(s, "220 go ahead\r\n")
			s.Read(make([]byte, 4096))  // the ClientHello
			io.WriteString(s, "OK\r\n") // shorter than a TLS record header
			io.Copy(io.Discard, s)
		})},
		{name: "an SMTP reply to the ClientHello", want: "500", dialer: script(func(s net.Conn) {
			io.WriteString(s, "220 go ahead\r\n")
			s.Read(make([]byte, 4096))
			io.WriteString(s, "500 5.5.2 Error: command not recognized\r\n")
			io.Copy(io.Discard, s)
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, ip := "plain.example.test", netip.MustParseAddr("192.0.2.1")
			if tt.dialer == nil {
				ip = l.NextAddr()
				l.MustMX(t, host, []netip.Addr{ip}, lab.SMTPOptions{Mode: lab.SMTPPlainAfterSTARTTLS})
			}
			p := prober(l, 15*time.Second)
			if tt.dialer != nil {
				p.Dialer = tt.dialer
			}
			start := time.Now()
			r := p.Probe(context.Background(), host, ip)
			if r.Class != smtpprobe.TLSPlaintext || !strings.Contains(r.Error, tt.want) {
				t.Errorf("class %q (%s), want %q naming %q", r.Class, r.Error, smtpprobe.TLSPlaintext, tt.want)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("took %v: plain text must be recognised at once, not by the 15 s handshake timeout", took)
			}
			if r.TLS != nil || !r.STARTTLS {
				t.Errorf("TLS %v STARTTLS %v", r.TLS, r.STARTTLS)
			}
		})
	}
}

// TestEHLOExtensionsCapped: a server that lists thousands of EHLO keywords
// costs a bounded list, like the transcript.
func TestEHLOExtensionsCapped(t *testing.T) {
	var ehlo strings.Builder
	ehlo.WriteString("250-mx\r\n")
	for i := range 600 {
		fmt.Fprintf(&ehlo, "250-X%d%s\r\n", i, strings.Repeat("K", 300))
	}
	ehlo.WriteString("250 STARTTLS\r\n")
	p := &smtpprobe.Prober{EHLO: "scanner.example.test", CommandTimeout: 5 * time.Second, HandshakeTimeout: 5 * time.Second,
		Dialer: &dial.Dialer{Net: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, s := net.Pipe()
			go func() {
				defer s.Close()
				s.SetDeadline(time.Now().Add(10 * time.Second))
				r := bufio.NewReader(s)
				io.WriteString(s, "220 mx ESMTP\r\n")
				r.ReadString('\n')
				io.WriteString(s, ehlo.String())
				r.ReadString('\n') // STARTTLS
				io.WriteString(s, "454 4.7.0 not now\r\n")
				io.Copy(io.Discard, s)
			}()
			return c, nil
		}}}
	r := p.Probe(context.Background(), "mx.example.test", netip.MustParseAddr("192.0.2.1"))
	if !r.STARTTLS || r.Class != smtpprobe.STARTTLSRefused {
		t.Errorf("STARTTLS at the end of the list not seen: %s (%s)", r.Class, r.Error)
	}
	if r.Timings.Total > 4000 {
		t.Errorf("took %.0f ms: a QUIT that gets no answer is given 1 s, not the 5 s command timeout", r.Timings.Total)
	}
	if len(r.Extensions) > 60 {
		t.Errorf("%d extensions kept, want at most 60", len(r.Extensions))
	}
	for _, x := range r.Extensions {
		if len(x) > 210 {
			t.Errorf("extension of %d bytes kept", len(x))
		}
	}
}

// TestContextCancelsProbe: the scan's context bounds a probe. A phase cut
// short by it is "cut-off", which says nothing about the server; a phase
// that runs out of its own time is the server's doing.
func TestContextCancelsProbe(t *testing.T) {
	l := lab.New(t)
	addr := l.NextAddr()
	l.MustMX(t, "stall.example.test", []netip.Addr{addr}, lab.SMTPOptions{Mode: lab.SMTPNoBanner})
	tests := []struct {
		name     string
		budget   time.Duration
		cancel   bool
		banner   time.Duration
		class    smtpprobe.Class
		observed bool
		want     string
	}{
		{"budget ends before the banner timeout", 200 * time.Millisecond, false, 20 * time.Second, smtpprobe.CutOff, false, "time budget ran out while waiting for the banner"},
		{"interrupted", 200 * time.Millisecond, true, 20 * time.Second, smtpprobe.CutOff, false, "interrupted"},
		{"banner timeout before the budget", 10 * time.Second, false, 200 * time.Millisecond, smtpprobe.BannerTimeout, true, "did not arrive in time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), tt.budget)
			defer cancel()
			if tt.cancel {
				ctx, cancel = context.WithCancel(context.Background())
				time.AfterFunc(200*time.Millisecond, cancel)
			}
			start := time.Now()
			r := (&smtpprobe.Prober{Dialer: l.Dialer(), BannerTimeout: tt.banner}).Probe(ctx, "stall.example.test", addr)
			if r.Class != tt.class || r.Class.Observed() != tt.observed || !strings.Contains(r.Error, tt.want) {
				t.Errorf("class %q observed %v (%s), want %q naming %q", r.Class, r.Class.Observed(), r.Error, tt.class, tt.want)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("took %v", took)
			}
		})
	}
}

func TestIPv6AndDefaultEHLO(t *testing.T) {
	l := lab.New(t)
	v6 := l.NextAddr6()
	srv := l.MustMX(t, "v6.example.test", []netip.Addr{v6}, lab.SMTPOptions{Mode: lab.SMTPStartTLS})
	r := (&smtpprobe.Prober{Dialer: l.Dialer(), Roots: l.CA.Pool()}).Probe(context.Background(), "v6.example.test", v6)
	if r.Class != "" || r.Address != "[::1]:25" || !r.TLS.Verdict.OK() {
		t.Fatalf("IPv6 probe: %+v", r)
	}
	if !strings.HasPrefix(r.EHLOName, "[") {
		t.Errorf("default EHLO %q, want an address literal", r.EHLOName)
	}
	srv.WaitIdle(context.Background())
	if cmds := srv.Sessions()[0].Commands; !strings.HasPrefix(cmds[0], "EHLO [") {
		t.Errorf("commands %q", cmds)
	}
}

// FuzzProbeReplies feeds arbitrary server bytes to the probe: it must never
// panic, always classify the outcome, and keep its transcript capped.
func FuzzProbeReplies(f *testing.F) {
	for _, s := range []string{
		"220 mx ESMTP\r\n250-mx\r\n250 STARTTLS\r\n220 go\r\n",
		"220-a\r\n220-b\r\n220 c\r\n250 mx\r\n",
		"421 4.7.0 busy\r\n",
		"220 " + strings.Repeat("x", 3000),
		"hello\r\n",
		"220 mx\r\n250-mx\r\n250 STARTTLS\r\n220 go\r\n250 plain text\r\n",
		"220 ok\r\n250-mx\r\n250-STARTTLS\r\n250 8BITMIME\r\n454 no\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, server []byte) {
		p := &smtpprobe.Prober{
			Dialer: &dial.Dialer{Net: func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, s := net.Pipe()
				go func() {
					s.SetDeadline(time.Now().Add(time.Second))
					go io.Copy(io.Discard, s)
					s.Write(server)
					s.Close()
				}()
				return c, nil
			}},
			EHLO: "fuzz.example", BannerTimeout: 200 * time.Millisecond, CommandTimeout: 200 * time.Millisecond, HandshakeTimeout: 200 * time.Millisecond,
		}
		r := p.Probe(context.Background(), "mx.example.test", netip.MustParseAddr("192.0.2.1"))
		if r.Class == "" && r.TLS == nil {
			t.Fatalf("no TLS and no failure class: %+v", r)
		}
		if r.Class != "" && r.Error == "" {
			t.Fatalf("class %q without an error", r.Class)
		}
		if len(r.Transcript) > 60 || len(r.Banner) > 210 || len(r.Extensions) > 60 {
			t.Fatalf("transcript, banner or extensions not capped")
		}
	})
}

// deadlineConn records every deadline set after its context ended that is
// not in the past.
type deadlineConn struct {
	net.Conn
	ctx    context.Context
	mu     sync.Mutex
	rearms []time.Time
}

func (c *deadlineConn) SetDeadline(t time.Time) error {
	if c.ctx.Err() != nil && (t.IsZero() || t.After(time.Now())) {
		c.mu.Lock()
		c.rearms = append(c.rearms, t)
		c.mu.Unlock()
	}
	return c.Conn.SetDeadline(t)
}

// TestCanceledProbeStaysCanceled: a probe whose context ends right after
// the connection opens never gives the connection a new deadline, and
// ends at once instead of waiting out the banner timeout.
func TestCanceledProbeStaysCanceled(t *testing.T) {
	l := lab.New(t)
	addr := l.NextAddr()
	l.MustMX(t, "stall.example.test", []netip.Addr{addr}, lab.SMTPOptions{Mode: lab.SMTPNoBanner})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var dc *deadlineConn
	p := prober(l, 10*time.Second)
	p.Dialer = &dial.Dialer{Rules: l.Rules(), Net: func(dctx context.Context, network, address string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(dctx, network, address)
		if err != nil {
			return nil, err
		}
		dc = &deadlineConn{Conn: c, ctx: ctx}
		cancel() // the caller gives up as the connection opens
		return dc, nil
	}}
	start := time.Now()
	r := p.Probe(ctx, "stall.example.test", addr)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("a canceled probe took %v (the banner timeout is 10 s)", took)
	}
	if r.Class == "" {
		t.Errorf("a canceled probe succeeded: %+v", r)
	}
	dc.mu.Lock()
	defer dc.mu.Unlock()
	if len(dc.rearms) > 0 {
		t.Errorf("deadlines set after the cancellation: %v", dc.rearms)
	}
}
