package resolver_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mailtls/mailtls/internal/dane"
	"github.com/mailtls/mailtls/internal/lab"
	"github.com/mailtls/mailtls/internal/resolver"
	"github.com/mailtls/mailtls/internal/sendpolicy"
	"github.com/mailtls/mailtls/internal/socketmap"
)

// postfixWait bounds each wait for the Postfix instance (start, delivery).
const postfixWait = 90 * time.Second

// postfixInstance is a throwaway Postfix (Debian's package): its own
// configuration, queue and data directories, its log in a file, its
// listener on a loopback address of the test, run in a private mount
// namespace whose resolv.conf names the lab DNS (Postfix's SMTP client
// looks MX hosts up through the system resolver, which reads port 53 only).
type postfixInstance struct {
	dir, confDir, logFile string
	submit                string // the smtpd listener, "ip:port"
	cmd                   *exec.Cmd
	done                  chan error
}

// postfixPrereqs skips (fails under CI) unless Postfix, root and the
// namespace tools are there, and returns Postfix's daemon directory.
func postfixPrereqs(t *testing.T) string {
	t.Helper()
	postconf, err := exec.LookPath("postconf")
	if err != nil {
		postconf = "/usr/sbin/postconf"
	}
	out, err := exec.Command(postconf, "-d", "-h", "daemon_directory").Output()
	if err != nil {
		skipOrFail(t, "postconf not found or failing (apt-get install postfix): %v", err)
	}
	daemonDir := strings.TrimSpace(string(out))
	for _, p := range []string{filepath.Join(daemonDir, "master"), "/usr/sbin/postfix", "/usr/sbin/postqueue"} {
		if _, err := os.Stat(p); err != nil {
			skipOrFail(t, "%s is missing (apt-get install postfix): %v", p, err)
		}
	}
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root: Postfix's master runs as root, the lab binds ports 53 and 25 and resolv.conf is bind-mounted in a mount namespace")
	}
	for _, tool := range []string{"unshare", "mount", "sh"} {
		if _, err := exec.LookPath(tool); err != nil {
			skipOrFail(t, "%s not found: %v", tool, err)
		}
	}
	// The package creates the unprivileged user and the set-gid group.
	for _, db := range [][2]string{{"passwd", "postfix"}, {"group", "postdrop"}} {
		if err := exec.Command("getent", db[0], db[1]).Run(); err != nil {
			skipOrFail(t, "no %s %q (apt-get install postfix creates it): %v", db[0], db[1], err)
		}
	}
	return daemonDir
}

// postfixMasterCF lists the services this instance needs, none chrooted
// (the chroot would need copies of resolv.conf and the CA file) and an
// smtpd on the test's submission address.
const postfixMasterCF = `%s inet n - n - - smtpd
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
tlsmgr    unix - - n 1000? 1 tlsmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
flush     unix n - n 1000? 0 flush
proxymap  unix - - n - - proxymap
smtp      unix - - n - - smtp
relay     unix - - n - - smtp
showq     unix n - n - - showq
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
`

// startPostfix writes the configuration and starts master(8) in ns.
// policyMap is the smtp_tls_policy_maps value, caFile the lab root;
// submit is the address of its smtpd listener.
func startPostfix(t *testing.T, ns *lab.Namespace, daemonDir, submit, policyMap, caFile string) *postfixInstance {
	t.Helper()
	// Postfix's daemons drop to the postfix user: the directories on the
	// way to the queue, data and CA files must be searchable.
	base := t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	p := &postfixInstance{dir: base, confDir: filepath.Join(base, "etc"), logFile: filepath.Join(base, "maillog"), submit: submit}
	for _, d := range []string{p.confDir, filepath.Join(base, "queue"), filepath.Join(base, "data")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(filepath.Join(base, "data"), postfixUID(t), -1); err != nil {
		t.Fatal(err)
	}
	mainCF := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/queue
data_directory = %[1]s/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = %[2]s
maillog_file_prefixes = %[1]s
myhostname = postfix.sender.test
mydomain = sender.test
myorigin = sender.test
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
relay_domains =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
# What docs/resolver.md tells a sender to configure.
smtp_tls_policy_maps = %[3]s
smtp_dns_support_level = dnssec
smtp_tls_security_level = dane
smtp_tls_CAfile = %[4]s
smtp_tls_loglevel = 1
smtp_host_lookup = dns
`, base, p.logFile, policyMap, caFile)
	files := map[string]string{"main.cf": mainCF, "master.cf": fmt.Sprintf(postfixMasterCF, submit)}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(p.confDir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// postfix check creates the queue directories with their owners and
	// modes, and checks the configuration.
	if out, err := exec.Command("/usr/sbin/postfix", "-c", p.confDir, "check").CombinedOutput(); err != nil {
		t.Fatalf("postfix check: %v\n%s", err, out)
	}
	// master -d stays in the foreground (no daemon to leak); its own
	// process group lets SIGTERM reach its children; -e ends it after ten
	// minutes should the test process die without stopping it.
	p.cmd = ns.Command(context.Background(), filepath.Join(daemonDir, "master"), "-c", p.confDir, "-d", "-e", "600")
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out lab.LogBuffer
	p.cmd.Stdout, p.cmd.Stderr = &out, &out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.done = make(chan error, 1)
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(p.stop)
	// Ready when smtpd answers.
	deadline := time.Now().Add(postfixWait)
	for {
		c, err := net.DialTimeout("tcp", submit, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("postfix master exited: %v\n%s\n%s", err, out.String(), p.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("postfix did not listen on %s: %v\n%s", submit, err, p.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p
}

func postfixUID(t *testing.T) int {
	t.Helper()
	out, err := exec.Command("id", "-u", "postfix").Output()
	if err != nil {
		t.Fatal(err)
	}
	var uid int
	if _, err := fmt.Sscan(string(out), &uid); err != nil {
		t.Fatal(err)
	}
	return uid
}

// stop ends master and its children (SIGTERM to the process group, then
// SIGKILL).
func (p *postfixInstance) stop() {
	pgid := p.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
	case <-time.After(10 * time.Second):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	// Children that outlived master (they exit when they notice) go too.
	syscall.Kill(-pgid, syscall.SIGKILL)
}

func (p *postfixInstance) log() string {
	b, _ := os.ReadFile(p.logFile)
	return string(b)
}

// send submits one message per recipient over SMTP.
func (p *postfixInstance) send(t *testing.T, rcpts ...string) {
	t.Helper()
	c, err := smtp.Dial(p.submit)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.sender.test"); err != nil {
		t.Fatal(err)
	}
	for _, r := range rcpts {
		if err := c.Mail("alice@sender.test", nil); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt(r, nil); err != nil {
			t.Fatalf("RCPT %s: %v\n%s", r, err, p.log())
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(w, "From: alice@sender.test\r\nTo: %s\r\nSubject: mailtls resolver test\r\n\r\nfor %s\r\n", r, r)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
}

// delivery is the outcome Postfix logged for a recipient.
type delivery struct {
	status, relay, detail string
}

// postfixStatusRe matches the smtp client's final line per recipient, e.g.
// "to=<bob@good.test>, relay=mx1.good.test[127.1.2.3]:25, delay=0.1,
// delays=..., dsn=2.0.0, status=sent (250 2.0.0 Ok: queued ...)".
var postfixStatusRe = regexp.MustCompile(`postfix/(?:smtp|error|bounce)\[\d+\]: [0-9A-F]+: to=<([^>]+)>, (?:relay=([^,]+), )?.*status=(\w+) \((.*)\)$`)

// outcomes reads the final status of every recipient from the log.
func (p *postfixInstance) outcomes() map[string]delivery {
	got := map[string]delivery{}
	sc := bufio.NewScanner(strings.NewReader(p.log()))
	for sc.Scan() {
		if m := postfixStatusRe.FindStringSubmatch(sc.Text()); m != nil {
			got[m[1]] = delivery{status: m[3], relay: m[2], detail: m[4]}
		}
	}
	return got
}

// waitOutcomes waits until every recipient has a status in the log.
func (p *postfixInstance) waitOutcomes(t *testing.T, rcpts []string) map[string]delivery {
	t.Helper()
	deadline := time.Now().Add(postfixWait)
	for {
		got := p.outcomes()
		missing := 0
		for _, r := range rcpts {
			if _, ok := got[r]; !ok {
				missing++
			}
		}
		if missing == 0 {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d recipients without a delivery status after %v:\n%s", missing, postfixWait, p.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// queued is one message in the queue, as postqueue -j prints it (Postfix
// 3.1+, one JSON object per line).
type queued struct {
	Queue      string `json:"queue_name"`
	ID         string `json:"queue_id"`
	Recipients []struct {
		Address string `json:"address"`
		Reason  string `json:"delay_reason"`
	} `json:"recipients"`
}

func (p *postfixInstance) queue(t *testing.T) []queued {
	t.Helper()
	out, err := exec.Command("/usr/sbin/postqueue", "-c", p.confDir, "-j").Output()
	if err != nil {
		t.Fatalf("postqueue -j: %v\n%s", err, out)
	}
	var q []queued
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var m queued
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("postqueue -j: %v\n%s", err, out)
		}
		q = append(q, m)
	}
	return q
}

// mxOn25 starts an MX host on port 25 of a loopback address of its own
// (Postfix connects to port 25 of the address DNS gives), with its A
// record in the lab DNS.
func mxOn25(t *testing.T, l *lab.Lab, host string, o lab.SMTPOptions) (*lab.SMTPServer, netip.Addr) {
	t.Helper()
	var s *lab.SMTPServer
	o.AcceptMail = true
	ip, err := lab.FreeLoopback(func(ip netip.Addr) error {
		o.Addr = lab.AddrPort(ip, 25)
		var err error
		s, err = l.MX(host, []netip.Addr{ip}, o)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, ip
}

// TestPostfixDelivery has a real Postfix, configured as docs/resolver.md
// says (smtp_tls_policy_maps through mailtls, DNSSEC, security level dane),
// deliver mail to lab MX hosts on port 25:
//   - MTA-STS enforce with a good MX certificate: delivered, over verified
//     TLS, with the MX name as SNI (RFC 8461 §4.2, servername=hostname);
//   - MTA-STS enforce with an MX certificate for another name: deferred,
//     not bounced (RFC 8461 §4.2: "MUST NOT deliver", and a temporary
//     failure, §5);
//   - the same certificate without MTA-STS: delivered (opportunistic TLS),
//     so the deferral above is the policy's doing;
//   - DANE with an MTA-STS policy: dane-only, delivered after TLSA
//     authentication (RFC 7672 §2.2, RFC 8461 §2);
//   - DANE whose TLSA record does not match a WebPKI-valid certificate, with
//     an MTA-STS policy that certificate satisfies: deferred, since DANE
//     takes precedence (RFC 8461 §2), where an MTA-STS-only resolver's
//     "secure" reply would have let it through.
func TestPostfixDelivery(t *testing.T) {
	daemonDir := postfixPrereqs(t)
	t.Parallel() // on addresses of its own
	l := lab.NewWellKnown(t)
	dir := t.TempDir()
	ns := lab.NeedNamespace(t, dir, l.DNS.IP().String(), l.CA, "Postfix")

	// DNSSEC: the lab resolver validates (AD on the signed root); the
	// DANE domains are signed, the others are not.
	w := world{t: t, l: l}
	w.signed()
	l.DNS.SetAD("test", false)
	for _, d := range []string{"dane.test", "danebad.test"} {
		l.DNS.SetAD(d, true)
	}
	stsPolicy := func(d string) {
		w := world{t: t, l: l, d: d}
		w.enforce("enforce", "mx1.$D")
	}
	mx := map[string]*lab.SMTPServer{}
	// good.test: enforce, and a certificate for the MX name.
	mx["good.test"], _ = mxOn25(t, l, "mx1.good.test", lab.SMTPOptions{})
	stsPolicy("good.test")
	// badcert.test: enforce, and a certificate for another name (from the
	// trusted CA: only the name is wrong).
	other := l.CA.MustIssue(t, lab.LeafOptions{DNSNames: []string{"mx.elsewhere.test"}})
	mx["badcert.test"], _ = mxOn25(t, l, "mx1.badcert.test", lab.SMTPOptions{Cert: other})
	stsPolicy("badcert.test")
	// nopolicy.test: the same wrong certificate, no MTA-STS.
	mx["nopolicy.test"], _ = mxOn25(t, l, "mx1.nopolicy.test", lab.SMTPOptions{Cert: other})
	// dane.test: TLSA 3 1 1 of the MX certificate, and an enforce policy.
	daneCert := l.CA.MustIssue(t, lab.LeafOptions{DNSNames: []string{"mx1.dane.test"}})
	mx["dane.test"], _ = mxOn25(t, l, "mx1.dane.test", lab.SMTPOptions{Cert: daneCert})
	l.DNS.MustAdd(t, "_25._tcp.mx1.dane.test. 300 IN TLSA "+dane.Record(3, 1, 1, daneCert.Leaf).String())
	stsPolicy("dane.test")
	// danebad.test: a certificate valid for the name from the trusted CA,
	// a TLSA record of another key, and an enforce policy.
	goodName := l.CA.MustIssue(t, lab.LeafOptions{DNSNames: []string{"mx1.danebad.test"}})
	stranger := l.CA.MustIssue(t, lab.LeafOptions{DNSNames: []string{"mx1.danebad.test"}})
	mx["danebad.test"], _ = mxOn25(t, l, "mx1.danebad.test", lab.SMTPOptions{Cert: goodName})
	l.DNS.MustAdd(t, "_25._tcp.mx1.danebad.test. 300 IN TLSA "+dane.Record(3, 1, 1, stranger.Leaf).String())
	stsPolicy("danebad.test")
	for d := range mx {
		l.DNS.MustAdd(t, d+". 300 IN MX 10 mx1."+d+".")
	}

	// mailtls's resolver as Postfix's policy map; every reply is recorded.
	e := newEnv(t, l)
	zones := resolver.Zones{Default: sendpolicy.Zone{RequireSNI: true}}
	var mu sync.Mutex
	replies := map[string][]string{}
	h := e.r.Handler(zones)
	policyAddr := serveSocketmap(t, func(ctx context.Context, req socketmap.Request) socketmap.Reply {
		rep := h(ctx, req)
		mu.Lock()
		replies[req.Key] = append(replies[req.Key], rep.String())
		mu.Unlock()
		return rep
	})
	caFile, err := l.CA.WriteRootPEM(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	pf := startPostfix(t, ns, daemonDir, lab.AddrPort(l.DNS.IP(), 10025), "socketmap:inet:"+policyAddr+":postfix", caFile)

	// For each domain: the policy Postfix must get, the outcome, the smtp
	// client's TLS log line and the SNI the MX must see (Postfix sends the
	// MX name for servername=hostname and for DANE, none at the
	// opportunistic level).
	want := map[string]struct {
		reply, status, tlsLog, sni string
	}{
		"good.test":     {"OK secure match=mx1.good.test servername=hostname", "sent", `Verified TLS connection established to mx1.good.test`, "mx1.good.test"},
		"badcert.test":  {"OK secure match=mx1.badcert.test servername=hostname", "deferred", `server certificate verification failed for mx1.badcert.test\S*: num=\d+:hostname mismatch`, "mx1.badcert.test"},
		"nopolicy.test": {"NOTFOUND ", "sent", `Trusted TLS connection established to mx1.nopolicy.test`, ""},
		"dane.test":     {"OK dane-only", "sent", `Verified TLS connection established to mx1.dane.test`, "mx1.dane.test"},
		"danebad.test":  {"OK dane-only", "deferred", `server certificate verification failed for mx1.danebad.test\S*: num=\d+:no matching DANE TLSA records`, "mx1.danebad.test"},
	}
	var rcpts []string
	for d := range want {
		rcpts = append(rcpts, "bob@"+d)
	}
	pf.send(t, rcpts...)
	got := pf.waitOutcomes(t, rcpts)
	t.Logf("Postfix log:\n%s", pf.log())

	for d, wt := range want {
		r := got["bob@"+d]
		mu.Lock()
		reps := replies[d]
		mu.Unlock()
		if len(reps) == 0 || reps[0] != wt.reply {
			t.Errorf("%s: Postfix got %q from the policy map, want %q", d, reps, wt.reply)
		}
		if r.status != wt.status {
			t.Errorf("%s: status=%s (%s), want status=%s", d, r.status, r.detail, wt.status)
		}
		if !regexp.MustCompile(wt.tlsLog).MatchString(pf.log()) {
			t.Errorf("%s: no log line matching %q", d, wt.tlsLog)
		}
		if !strings.HasPrefix(r.relay, "mx1."+d+"[") {
			t.Errorf("%s: relay %q, want mx1.%s", d, r.relay, d)
		}
		s := mx[d]
		sessions := s.Sessions()
		var msgs []lab.SMTPMessage
		for _, ss := range sessions {
			msgs = append(msgs, ss.Messages...)
		}
		switch wt.status {
		case "sent":
			if !strings.HasPrefix(r.detail, "250 2.0.0 Ok: queued by mailtls lab") {
				t.Errorf("%s: %q, want the lab MX's 250", d, r.detail)
			}
			if len(msgs) != 1 || !msgs[0].TLS || len(msgs[0].To) != 1 || msgs[0].To[0] != "bob@"+d || !strings.Contains(string(msgs[0].Data), "for bob@"+d) {
				t.Errorf("%s: the MX took %+v, want the one message over TLS", d, msgs)
			}
		case "deferred":
			if len(msgs) != 0 {
				t.Errorf("%s: the MX took %d messages, want none", d, len(msgs))
			}
			// Postfix got as far as the TLS handshake, and gave up there.
			if len(sessions) == 0 || !slices.Contains(sessions[0].Commands, "STARTTLS") {
				t.Errorf("%s: sessions %+v, want a STARTTLS", d, sessions)
			}
		}
		if len(sessions) > 0 && sessions[0].ServerName != wt.sni {
			t.Errorf("%s: SNI %q, want %q", d, sessions[0].ServerName, wt.sni)
		}
	}
	// Deferred, not bounced: the deferred messages wait in the deferred
	// queue with the reason (qmgr moves them there just after the smtp
	// client logs), and the others have left the queue.
	var deferred map[string]string
	for deadline := time.Now().Add(postfixWait); ; time.Sleep(100 * time.Millisecond) {
		deferred = map[string]string{}
		left := 0
		for _, m := range pf.queue(t) {
			for _, r := range m.Recipients {
				if m.Queue == "deferred" {
					deferred[r.Address] = r.Reason
				} else {
					left++
				}
			}
		}
		if left == 0 || time.Now().After(deadline) {
			break
		}
	}
	for d, wt := range want {
		reason, inQueue := deferred["bob@"+d]
		if inQueue != (wt.status == "deferred") || inQueue && reason != "Server certificate not verified" {
			t.Errorf("bob@%s in the deferred queue: %v %q, want %v (queue %v)", d, inQueue, reason, wt.status == "deferred", deferred)
		}
	}
	if strings.Contains(pf.log(), "status=bounced") || strings.Contains(pf.log(), "sender non-delivery notification") {
		t.Errorf("Postfix bounced a message:\n%s", pf.log())
	}
}
