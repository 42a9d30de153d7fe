// Package lab is the hermetic loopback world that mailtls tests, benchmarks
// and end-to-end tests of the binaries use instead of the internet.
//
// A [Lab] bundles:
//
//   - [DNS]: a UDP+TCP DNS server on 127.0.0.1 that answers like a
//     recursive resolver (CNAME chasing, NXDOMAIN vs NODATA, empty
//     non-terminals, RFC 4592 wildcards, EDNS0 and truncation) with
//     per-name controls for rcodes, dropped queries, forced truncation, the
//     AD bit (a validating resolver: RFC 4035) and latency;
//   - [CA] twice: Lab.CA, the root that clients trust, and Lab.Untrusted,
//     one that they do not; leaves come in good and deliberately bad
//     variants ([LeafOptions]);
//   - [HTTPS]: one virtual-host HTTPS listener that picks the certificate
//     by SNI, with handler helpers ([Static], [Redirect], [Endless],
//     [Slow]);
//   - SMTP servers for MX hosts ([Lab.MX], [SMTPServer]), well-behaved
//     or hostile;
//   - connect-to rules ([github.com/mailtls/mailtls/internal/dial.Rule])
//     that make fake public addresses such as 127.0.0.10:443 reach the lab's
//     listeners while clients keep the real host name for SNI and
//     certificate checks.
//
// Hostile raw TCP servers ([StartStall], [StartEndless]) stand alone.
//
// # Constructors
//
// Everything works outside tests too (benchmarks, commands): StartX returns
// (*X, error) and the caller calls Close. For tests, NewX(t) fails t on
// error and registers Close with t.Cleanup; likewise the MustX(t, …) forms
// of calls that can fail ([MustCA], [CA.MustIssue], [DNS.MustAdd],
// [Lab.MustPolicyHost], [Lab.MustMX]).
//
// # A test
//
// A domain with an MTA-STS TXT record (RFC 8461 §3.1) and a policy host
// (RFC 8461 §3.3):
//
//	l := lab.New(t)
//	l.DNS.MustAdd(t, `_mta-sts.example.test. 300 IN TXT "v=STSv1; id=1"`)
//	l.MustPolicyHost(t, "example.test", lab.PolicyHostOptions{
//		Body: "version: STSv1\r\nmode: enforce\r\nmx: mx.example.test\r\nmax_age: 86400\r\n",
//	})
//
// Then point the scanner at the lab: DNS server l.DNS.Addr() (or
// l.DNS.NetResolver()), trusted roots l.CA.Pool() (or a file from
// l.CA.WriteRootPEM(t.TempDir()) for a --ca-file flag), and dialer
// l.Dialer() (or l.ConnectToFlags() as --connect-to flags for the binary).
//
// # Addresses
//
// Lab.NextAddr hands out 127.0.0.10, 127.0.0.11, …; nothing listens there,
// the connect-to rules redirect them, so they work on systems where only
// 127.0.0.1 is configured. IPv6 is limited to ::1, the only IPv6 loopback
// address ([Lab.NextAddr6]): map ::1 once per port, e.g. ::1:443 to the
// shared HTTPS server (which tells hosts apart by SNI). A listener that
// really uses IPv6 can be started with StartHTTPS("[::1]:0").
//
// # SMTP
//
// [StartSMTP] starts an SMTP server on a listener of its own; its
// [SMTPMode] says how it behaves:
//
//   - [SMTPStartTLS] and [SMTPNoStartTLS] are well-behaved, with and
//     without STARTTLS ("502 5.5.1 not implemented");
//   - [SMTPStartTLSRefused] advertises STARTTLS and answers it "454 4.7.0";
//     [SMTPHandshakeFails] answers it 220 and then sends garbage instead of
//     a ServerHello; [SMTPPlainAfterSTARTTLS] answers it 220 and goes on in
//     plain text;
//   - [SMTPBanner421] and [SMTPBanner554] greet with a refusal and close;
//   - [SMTPNoBanner] says nothing and [SMTPStallAfterBanner] nothing after
//     its 220 banner, until the client or Close ends the connection;
//   - [SMTPEndlessBanner] and [SMTPEndlessMultiline] send a greeting that
//     never ends, until the client goes away.
//
// No mode accepts mail: MAIL gets 550. SMTPOptions set the server name,
// the certificates (a good one from the lab CA by default; pass bad ones
// from [LeafOptions] or Lab.Untrusted) and the TLS versions (MaxVersion
// tls.VersionTLS10 for a TLS 1.0-only server).
//
// [Lab.MX] starts a server for an MX host, publishes the host's A and AAAA
// records and maps port 25 of each address to the server:
//
//	l.DNS.MustAdd(t, "example.test. 300 IN MX 10 mx1.example.test.",
//		"example.test. 300 IN MX 20 mx2.example.test.",
//		"example.test. 300 IN MX 30 mx3.example.test.")
//	mx1 := l.MustMX(t, "mx1.example.test", []netip.Addr{l.NextAddr(), l.NextAddr6()}, lab.SMTPOptions{})
//	l.MustMX(t, "mx2.example.test", []netip.Addr{l.NextAddr()}, lab.SMTPOptions{
//		MaxVersion: tls.VersionTLS10, // STARTTLS with TLS 1.0 only
//	})
//	l.MustMX(t, "mx3.example.test", []netip.Addr{l.NextAddr()}, lab.SMTPOptions{
//		Mode: lab.SMTPBanner421,
//	})
//
// ::1 can carry port 25 of one MX host per lab. The server itself listens
// on 127.0.0.1 whatever its addresses; SMTPOptions.Addr "[::1]:0" makes it
// listen on IPv6.
//
// After the scan, mx1.WaitIdle(ctx) and then mx1.Sessions() tell what the
// scanner did on each connection (commands, TLS version, SNI), and
// mx1.MaxConcurrent() how many connections it held open at once. All lab
// clients come from 127.0.0.1 (or ::1), so a scanner that connects to one
// address at a time shows MaxConcurrent 1 on a server with one address.
//
// # ACME
//
// [StartACME] runs Let's Encrypt's Pebble test CA in the test process. Its
// validator resolves names with the lab DNS only and connects to the
// address found on [ACMEOptions] HTTPPort (http-01) or TLSPort
// (tls-alpn-01), so the server under test must really answer; Pebble's
// random sleeps and bad nonces are off, and every order is validated anew
// unless ReuseAuthz is set. For a server using certmagic:
//
//	l := lab.New(t)
//	l.DNS.MustAdd(t, "mta-sts.example.test. 300 IN A 127.0.0.1")
//	ln, _ := net.Listen("tcp", "127.0.0.1:0") // the server's HTTP listener
//	port := ln.Addr().(*net.TCPAddr).Port
//	a := lab.NewACME(t, l.DNS, l.CA, lab.ACMEOptions{HTTPPort: port, CertLifetime: time.Hour})
//	iss := certmagic.NewACMEIssuer(cfg, certmagic.ACMEIssuer{
//		CA: a.DirectoryURL(), TrustedRoots: a.APIRoots(), Email: "a@example.test", Agreed: true,
//		ListenHost: "127.0.0.1", AltHTTPPort: port, DisableTLSALPNChallenge: true,
//		Logger: zap.NewNop(),
//	})
//	// serve iss.HTTPChallengeHandler(h) on ln, then cfg.ManageSync(ctx, names)
//
// Clients of the server then trust a.IssuedRoots() (or a.IssuedRootPEM()
// written to a --ca-file). a.Orders(), a.Validations() and a.Issued() tell
// what happened. certmagic keeps the challenges it is solving in a
// process-wide map keyed by name: tests that run in parallel in one process
// must obtain certificates for different names.
//
// # mailtls serve processes
//
// [BuildMailtls] builds the command once; [StartServe] and [StartServes]
// run `mailtls serve` processes (a configuration file, --roles, extra
// environment) and wait until each serves and its admin /healthz answers.
// A [Serve] knows its listeners' addresses (from its log), keeps its log,
// reads its admin pages ([Serve.Get], [Serve.Metric]) and ends by SIGKILL
// ([Serve.Kill], a crash) or SIGTERM ([Serve.Stop]); the test's end kills
// what still runs and prints the logs of a failed test. The built binary
// cannot be given connect-to rules or a CA pool in memory: give it a lab
// started with [NewWellKnown] (DNS on port 53, HTTPS on 443, MX servers on
// port 25 of addresses of their own via [FreeLoopback]) through
// web.scanner.resolvers, and the lab CA through SSL_CERT_FILE in
// ServeOptions.Env:
//
//	bin := lab.MustBuildMailtls(t)
//	srv := lab.StartServes(t, 3, func(i int) lab.ServeOptions {
//		return lab.ServeOptions{Binary: bin, Config: cfg, Roles: []string{"worker", "admin"},
//			Env: []string{"SSL_CERT_FILE=" + rootPEM}}
//	})
//	srv[1].Kill()
//	v, ok, err := srv[0].Metric(ctx, `mailtls_worker_lease_takeovers_total{lease="domain"}`)
package lab
