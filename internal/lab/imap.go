package lab

import (
	"crypto/tls"
	"net"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// IMAPOptions configure NewIMAP.
type IMAPOptions struct {
	// StartTLS serves plain connections that upgrade with STARTTLS;
	// otherwise TLS starts at once (implicit TLS). NoTLS serves plain
	// text only, with LOGIN allowed: a server a client must refuse.
	StartTLS, NoTLS bool
	// Cert is the server certificate; zero: one for imap.example.test and
	// 127.0.0.1 from a CA of the server's own (CA; Client trusts it).
	Cert *tls.Certificate
	// Mailboxes besides INBOX.
	Mailboxes []string
}

// IMAPServer is an in-process IMAP server (go-imap's imapmemserver) on
// a loopback port, with one user "reports" (password "secret").
type IMAPServer struct {
	Addr string
	// Client is a client configuration trusting the server's CA, for
	// imap.example.test.
	Client *tls.Config
	// CA issued the server's certificate (unless IMAPOptions.Cert), for
	// a client in another process (a ca_file).
	CA     *CA
	logins atomic.Int32
}

// NewIMAP starts the server; it stops with the test.
func NewIMAP(t testing.TB, o IMAPOptions) *IMAPServer {
	t.Helper()
	ca := MustCA(t, "imap")
	cert := ca.MustIssue(t, LeafOptions{DNSNames: []string{"imap.example.test"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if o.Cert != nil {
		cert = *o.Cert
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}}
	mem := imapmemserver.New()
	u := imapmemserver.NewUser("reports", "secret")
	for _, mb := range append([]string{"INBOX"}, o.Mailboxes...) {
		if err := u.Create(mb, nil); err != nil {
			t.Fatal(err)
		}
	}
	mem.AddUser(u)
	s := &IMAPServer{Client: &tls.Config{RootCAs: ca.Pool(), ServerName: "imap.example.test"}, CA: ca}
	opts := &imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &countingSession{Session: mem.NewSession(), s: s}, nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapMove: {}},
		Logger:       quietIMAPLog{},
		InsecureAuth: o.NoTLS,
	}
	if o.StartTLS {
		opts.TLSConfig = tc
	}
	srv := imapserver.New(opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = ln.Addr().String()
	if !o.StartTLS && !o.NoTLS {
		ln = tls.NewListener(ln, tc)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

type quietIMAPLog struct{}

func (quietIMAPLog) Printf(string, ...any) {}

// countingSession counts logins (a client that must refuse a server
// should never log in) and passes MOVE through.
type countingSession struct {
	imapserver.Session
	s *IMAPServer
}

func (c *countingSession) Login(user, pass string) error {
	c.s.logins.Add(1)
	return c.Session.Login(user, pass)
}

func (c *countingSession) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	return c.Session.(imapserver.SessionMove).Move(w, numSet, dest)
}

// Logins counts the logins of clients other than the server's own
// helpers (Deliver, Flags).
func (s *IMAPServer) Logins() int { return int(s.logins.Load()) }

// dial logs in as the helper (not counted).
func (s *IMAPServer) dial(t testing.TB) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialTLS(s.Addr, &imapclient.Options{TLSConfig: s.Client})
	if err != nil {
		c, err = imapclient.DialStartTLS(s.Addr, &imapclient.Options{TLSConfig: s.Client})
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login("reports", "secret").Wait(); err != nil {
		t.Fatal(err)
	}
	s.logins.Add(-1)
	return c
}

// Deliver appends messages to mailbox, as a mail server would.
func (s *IMAPServer) Deliver(t testing.TB, mailbox string, msgs ...string) {
	t.Helper()
	c := s.dial(t)
	defer c.Close()
	for _, m := range msgs {
		cmd := c.Append(mailbox, int64(len(m)), nil)
		cmd.Write([]byte(m))
		cmd.Close()
		if _, err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
}

// Flags returns the flags of every message in mailbox, in order.
func (s *IMAPServer) Flags(t testing.TB, mailbox string) [][]imap.Flag {
	t.Helper()
	c := s.dial(t)
	defer c.Close()
	sel, err := c.Select(mailbox, nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages == 0 {
		return nil
	}
	msgs, err := c.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: sel.NumMessages}}, &imap.FetchOptions{Flags: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var out [][]imap.Flag
	for _, m := range msgs {
		out = append(out, m.Flags)
	}
	return out
}
