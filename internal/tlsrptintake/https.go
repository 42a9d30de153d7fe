package tlsrptintake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/mailtls/mailtls/internal/store"
	"github.com/mailtls/mailtls/internal/tlsrpt"
)

// Defaults of the HTTPS intake.
const (
	DefaultHTTPSPath      = "/tlsrpt"
	DefaultPostsPerMinute = 60 // per client address
	DefaultPostBurst      = 20
	// DefaultStoreTimeout bounds parsing and storing one report.
	DefaultStoreTimeout = 30 * time.Second
)

// HTTPHandler takes reports POSTed to an https rua URI (RFC 8460 §3, §5.4).
// The body is read by content (gzip or JSON), whatever the Content-Type
// says; Content-Encoding: gzip is accepted too. It answers 201 once a new
// report is stored (200 for a report it had already), 400 for a body that
// is not a report, 413 past the size caps, 429 when the client sends too
// fast and 503 when storing failed (the sender retries, RFC 8460 §5.5).
// Nothing in a response reflects the request or says whether the domain
// is configured.
type HTTPHandler struct {
	Intake *Intake
	// MaxBody caps the bytes read (default tlsrpt.DefaultMaxCompressed,
	// RFC 8460 §5.2's ten megabytes).
	MaxBody int64
	// PerMinute and Burst limit the posts of one client address (zero:
	// the defaults; PerMinute < 0: no limit).
	PerMinute float64
	Burst     int
	// ClientIP says who sent r (default: the connection's address).
	ClientIP func(r *http.Request) netip.Addr
	Timeout  time.Duration // default DefaultStoreTimeout

	once    sync.Once
	mu      sync.Mutex
	clients map[netip.Addr]*client
	sweep   time.Time
}

type client struct {
	lim  *rate.Limiter
	seen time.Time
}

func (h *HTTPHandler) init() {
	h.once.Do(func() {
		if h.MaxBody <= 0 {
			h.MaxBody = tlsrpt.DefaultMaxCompressed
		}
		if h.PerMinute == 0 {
			h.PerMinute = DefaultPostsPerMinute
		}
		if h.Burst <= 0 {
			h.Burst = DefaultPostBurst
		}
		if h.Timeout <= 0 {
			h.Timeout = DefaultStoreTimeout
		}
		h.clients = map[netip.Addr]*client{}
	})
}

// allow takes a token for ip; idle clients are forgotten every minute so
// the table stays bounded by the clients of the last minutes.
func (h *HTTPHandler) allow(ip netip.Addr) bool {
	if h.PerMinute < 0 {
		return true
	}
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if now.Sub(h.sweep) > time.Minute {
		for k, c := range h.clients {
			if now.Sub(c.seen) > 10*time.Minute {
				delete(h.clients, k)
			}
		}
		h.sweep = now
	}
	c := h.clients[ip]
	if c == nil {
		c = &client{lim: rate.NewLimiter(rate.Limit(h.PerMinute/60), h.Burst)}
		h.clients[ip] = c
	}
	c.seen = now
	return c.lim.AllowN(now, 1)
}

func remoteAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

// reply sends a short text answer; it never echoes the request.
func reply(w http.ResponseWriter, code int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	io.WriteString(w, text+"\n")
}

// ServeHTTP implements http.Handler.
func (h *HTTPHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.init()
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			h.Intake.log().Error("panic taking a TLS-RPT report", "panic", fmt.Sprint(p))
			reply(w, http.StatusInternalServerError, "internal error")
		}
	}()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		reply(w, http.StatusMethodNotAllowed, "POST a TLS-RPT report here (RFC 8460 §5.4)")
		return
	}
	ip := remoteAddr(r)
	if h.ClientIP != nil {
		ip = h.ClientIP(r)
	}
	if !h.allow(ip) {
		h.Intake.Metrics.received(ChannelHTTPS, "rate_limited")
		w.Header().Set("Retry-After", "60")
		reply(w, http.StatusTooManyRequests, "too many reports from this address; retry later")
		return
	}
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity", "gzip", "x-gzip":
		// gzip is told by content anyway (RFC 8460 §5.2 compresses the
		// body itself; some senders may say so in the header instead).
	default:
		h.Intake.Metrics.received(ChannelHTTPS, "refused")
		reply(w, http.StatusUnsupportedMediaType, "unsupported Content-Encoding; send gzip or nothing")
		return
	}
	if r.ContentLength > h.MaxBody {
		// Refused before reading: the body is never read to its end.
		h.Intake.Metrics.received(ChannelHTTPS, "refused")
		w.Header().Set("Connection", "close")
		reply(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("report too large: at most %d bytes", h.MaxBody))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.MaxBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		h.Intake.Metrics.received(ChannelHTTPS, "refused")
		reply(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("report too large: at most %d bytes", h.MaxBody))
		return
	case err != nil:
		h.Intake.Metrics.received(ChannelHTTPS, "refused")
		reply(w, http.StatusBadRequest, "could not read the body")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.Timeout)
	defer cancel()
	res, err := h.Intake.Body(ctx, body, Source{Channel: ChannelHTTPS, ClientIP: ip.String(), FileName: fileNameOf(r)})
	switch {
	case errors.Is(err, tlsrpt.ErrTooLarge) || errors.Is(err, tlsrpt.ErrBomb):
		reply(w, http.StatusRequestEntityTooLarge, "report too large once decompressed")
	case err != nil && Refused(err):
		reply(w, http.StatusBadRequest, "not a TLS-RPT report (RFC 8460 §4.4: a JSON object, gzip-compressed or not)")
	case err != nil:
		w.Header().Set("Retry-After", "300")
		reply(w, http.StatusServiceUnavailable, "the report could not be stored just now; retry later")
	case res.Outcome == store.OutcomeDuplicate:
		reply(w, http.StatusOK, "report received before")
	default:
		reply(w, http.StatusCreated, "report stored")
	}
}

// fileNameOf is the file name a sender gave in Content-Disposition (a
// hint for a report that lacks its policy-domain, RFC 8460 §5.1).
func fileNameOf(r *http.Request) string {
	if cd := r.Header.Get("Content-Disposition"); cd != "" {
		if _, params, err := mime.ParseMediaType(cd); err == nil {
			return params["filename"]
		}
	}
	return ""
}
