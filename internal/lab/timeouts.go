package lab

import "time"

// Deadlines for clients that talk to the lab in tests. They are generous on
// purpose: the whole suite runs packages in parallel on a small machine,
// where a loopback TLS handshake or DNS exchange can stall for a second or
// more, and a deadline that fires on a working server turns into a wrong
// finding (a fetch failure, an undetermined lookup). A test that wants a
// deadline to fire points the client at a server that never answers (Drop,
// NewStall, SMTPNoBanner, Slow…), so these values only make it wait longer,
// never pass where it should fail; timing-sensitive tests set their own.
const (
	// DNSTimeout bounds one DNS exchange; with DNSAttempts a dropped query
	// is given up after DNSTimeout × DNSAttempts.
	DNSTimeout  = 1500 * time.Millisecond
	DNSAttempts = 2
	// ConnectTimeout and HandshakeTimeout bound a TCP connect and a TLS
	// handshake (HTTPS and STARTTLS); SMTPTimeout bounds each SMTP phase
	// (banner, command).
	ConnectTimeout   = 5 * time.Second
	HandshakeTimeout = 5 * time.Second
	SMTPTimeout      = 5 * time.Second
	// ResponseTimeout bounds an HTTP response after the handshake; it must
	// stay above the 4 s after which a policy host counts as slow
	// (STS-FETCH-13).
	ResponseTimeout = 8 * time.Second
	// ScanBudget bounds a whole scan of one lab domain.
	ScanBudget = 30 * time.Second
)
