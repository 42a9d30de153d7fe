package lab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Namespace runs programs that read their DNS server from /etc/resolv.conf
// (port 53, no port syntax) and their trust anchors from OpenSSL's default
// paths — such as Debian's postfix-mta-sts-resolver — against a lab: in a
// private mount namespace (unshare -m) whose /etc/resolv.conf and
// /etc/nsswitch.conf are bind-mounted lab files, with SSL_CERT_FILE naming
// the lab root and no proxy. The host's files are never touched. It needs
// root (or CAP_SYS_ADMIN) and unshare.
type Namespace struct {
	ResolvConf, NSSwitch, CAFile string
}

// NewNamespace writes the files for a lab DNS server on dnsIP (port 53)
// and the CA's root into dir.
func NewNamespace(dir, dnsIP string, ca *CA) (*Namespace, error) {
	ns := &Namespace{ResolvConf: filepath.Join(dir, "resolv.conf"), NSSwitch: filepath.Join(dir, "nsswitch.conf")}
	var err error
	if ns.CAFile, err = ca.WriteRootPEM(dir); err != nil {
		return nil, err
	}
	// One attempt and a short timeout: a lost query fails fast instead of
	// hiding behind retries. trust-ad: glibc passes the lab's AD bit on to
	// DNSSEC-aware programs (Postfix with smtp_dns_support_level = dnssec)
	// instead of clearing it.
	for path, text := range map[string]string{
		ns.ResolvConf: "nameserver " + dnsIP + "\noptions attempts:1 timeout:2 trust-ad\n",
		ns.NSSwitch:   "passwd: files\ngroup: files\nhosts: files dns\n",
	} {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			return nil, err
		}
	}
	return ns, nil
}

// NeedNamespace is NewNamespace for tests: it fails t on error and skips
// t when this machine cannot make private mount namespaces (Check) —
// even under CI, saying so loudly, since that is a capability of the
// machine, not a broken install. who names the program to run, for the
// message.
func NeedNamespace(t testing.TB, dir, dnsIP string, ca *CA, who string) *Namespace {
	t.Helper()
	ns, err := NewNamespace(dir, dnsIP, ca)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := ns.Check(ctx); err != nil {
		t.Skipf("SKIPPED: %s cannot be pointed at the lab DNS without touching /etc/resolv.conf: %v", who, err)
	}
	return ns
}

// namespaceWrapper bind-mounts the lab files over /etc in the private
// mount namespace and execs the command. nsswitch.conf is replaced too so
// that getaddrinfo reaches the lab DNS even on hosts whose "hosts:" line
// goes to systemd-resolved.
const namespaceWrapper = `mount --bind "$1" /etc/resolv.conf || exit 97
if [ -e /etc/nsswitch.conf ]; then mount --bind "$2" /etc/nsswitch.conf || exit 98; fi
shift 2
exec "$@"`

// Check runs "true" in a namespace: it fails on a machine that cannot make
// private mount namespaces (a container without CAP_SYS_ADMIN), where the
// programs cannot be pointed at a lab without touching the host's files.
func (ns *Namespace) Check(ctx context.Context) error {
	if out, err := ns.Command(ctx, "true").CombinedOutput(); err != nil {
		return fmt.Errorf("lab: this machine cannot make private mount namespaces: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// Command returns the command args run in the namespace. unshare execs the
// shell, which execs the program, so the process is the program itself.
func (ns *Namespace) Command(ctx context.Context, args ...string) *exec.Cmd {
	argv := append([]string{"-m", "--propagation", "private", "sh", "-c", namespaceWrapper, "lab", ns.ResolvConf, ns.NSSwitch}, args...)
	cmd := exec.CommandContext(ctx, "unshare", argv...)
	env := []string{"SSL_CERT_FILE=" + ns.CAFile, "SSL_CERT_DIR=/nonexistent"}
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch strings.ToLower(name) {
		case "https_proxy", "http_proxy", "all_proxy", "no_proxy", "ssl_cert_file", "ssl_cert_dir":
			continue
		}
		env = append(env, kv)
	}
	cmd.Env = env
	return cmd
}
