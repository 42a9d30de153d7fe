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
//   - connect-to rules ([github.com/mailtls/mailtls/internal/dial.Rule])
//     that make fake public addresses such as 127.0.0.10:443 reach the lab's
//     listeners while clients keep the real host name for SNI and
//     certificate checks.
//
// Hostile raw TCP servers ([StartStall], [StartEndless]) stand alone.
// SMTP servers (with and without STARTTLS) will join the Lab the same way:
// a listener, hosts mapped to it with MapAddr.
//
// # Constructors
//
// Everything works outside tests too (benchmarks, commands): StartX returns
// (*X, error) and the caller calls Close. For tests, NewX(t) fails t on
// error and registers Close with t.Cleanup; likewise the MustX(t, …) forms
// of calls that can fail ([MustCA], [CA.MustIssue], [DNS.MustAdd],
// [Lab.MustPolicyHost]).
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
package lab
