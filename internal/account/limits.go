package account

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limit is a token bucket: Burst at once, then one every Every.
type Limit struct {
	Every time.Duration
	Burst int
}

// Limits are the rate limits of the account forms (OWASP Authentication
// Cheat Sheet, "Protect Against Automated Attacks"; ASVS 4.0 V2.2.1). Per
// client is per IPv4 address or IPv6 /64 (web.ClientKey); per account is
// per submitted address, whether it has an account or not, so that a
// refusal tells nothing.
type Limits struct {
	LoginPerClient          Limit // every login attempt
	LoginFailuresPerAccount Limit // failed logins and password checks
	ResetPerClient          Limit // reset requests
	SignupPerClient         Limit // sign-ups
	MailPerAddress          Limit // mails of any kind to one address
	TokenFailuresPerClient  Limit // API requests with a wrong token
}

// DefaultLimits: a person never meets them; a script guessing passwords
// gets ten tries per account and then one a minute.
var DefaultLimits = Limits{
	LoginPerClient:          Limit{Every: 6 * time.Second, Burst: 20},
	LoginFailuresPerAccount: Limit{Every: time.Minute, Burst: 10},
	ResetPerClient:          Limit{Every: time.Minute, Burst: 5},
	SignupPerClient:         Limit{Every: 2 * time.Minute, Burst: 5},
	MailPerAddress:          Limit{Every: 20 * time.Minute, Burst: 3},
	TokenFailuresPerClient:  Limit{Every: 6 * time.Second, Burst: 20},
}

type limits struct {
	loginClient, loginAccount, resetClient, signupClient, mail, tokenClient *buckets
}

func newLimits(l Limits, now func() time.Time) *limits {
	return &limits{
		loginClient:  newBuckets(l.LoginPerClient, now),
		loginAccount: newBuckets(l.LoginFailuresPerAccount, now),
		resetClient:  newBuckets(l.ResetPerClient, now),
		signupClient: newBuckets(l.SignupPerClient, now),
		mail:         newBuckets(l.MailPerAddress, now),
		tokenClient:  newBuckets(l.TokenFailuresPerClient, now),
	}
}

// maxKeys bounds the keys a bucket set tracks; idle keys (whose bucket
// is full again) are dropped first.
const maxKeys = 100000

// buckets are token buckets by key, with bounded memory.
type buckets struct {
	limit Limit
	now   func() time.Time
	mu    sync.Mutex
	m     map[string]*bucket
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newBuckets(l Limit, now func() time.Time) *buckets {
	return &buckets{limit: l, now: now, m: map[string]*bucket{}}
}

func (b *buckets) get(key string, now time.Time) *rate.Limiter {
	x := b.m[key]
	if x == nil {
		if len(b.m) >= maxKeys {
			full := time.Duration(b.limit.Burst) * b.limit.Every
			for k, v := range b.m {
				if now.Sub(v.seen) > full {
					delete(b.m, k)
				}
			}
			if len(b.m) >= maxKeys {
				clear(b.m)
			}
		}
		x = &bucket{lim: rate.NewLimiter(rate.Every(b.limit.Every), b.limit.Burst)}
		b.m[key] = x
	}
	x.seen = now
	return x.lim
}

// take spends a token for key; it returns 0, or how long to wait when
// there is none (nothing is spent then).
func (b *buckets) take(key string) time.Duration {
	if b.limit.Burst <= 0 {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	r := b.get(key, now).ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d
	}
	return 0
}

// check returns how long to wait before key has a token, without spending
// one.
func (b *buckets) check(key string) time.Duration {
	if b.limit.Burst <= 0 {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	lim := b.get(key, now)
	if lim.TokensAt(now) >= 1 {
		return 0
	}
	r := lim.ReserveN(now, 1)
	d := r.DelayFrom(now)
	r.CancelAt(now)
	return d
}
