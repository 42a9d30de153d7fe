// Package password hashes and checks account passwords with Argon2id
// (RFC 9106) and keeps them as PHC strings:
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>
//
// (salt and hash in unpadded standard base64). The parameters are OWASP's
// minimum for Argon2id (Password Storage Cheat Sheet: m=19 MiB, t=2, p=1);
// a hash made with other parameters still verifies, and Verify says that
// it should be replaced (rehash at the next login).
//
// Argon2id is made to be expensive: a Hasher runs at most MaxConcurrent
// hashes at a time, so a burst of logins queues instead of exhausting
// memory (19 MiB each).
package password

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/argon2"
)

// Params are Argon2id parameters.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8
	SaltLen uint32 // bytes
	KeyLen  uint32 // bytes
}

// OWASP is the minimum OWASP recommends for Argon2id (19 MiB, 2 passes, 1
// lane), with a 16-byte salt (RFC 9106 §3.1) and a 32-byte hash. About
// 30 ms on the development machine.
var OWASP = Params{Memory: 19 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}

// Bounds on what a PHC string may ask for, so that a corrupt or hostile
// stored hash cannot make a login cost gigabytes or minutes.
const (
	MaxMemory  = 256 * 1024 // KiB
	MaxTime    = 16
	MaxThreads = 16
	minSalt    = 8 // RFC 9106 §3.1: at least 8 bytes
	maxSalt    = 64
	minKey     = 16
	maxKey     = 64
	// MaxLength bounds a password (bytes) handed to Argon2id.
	MaxLength = 4096
)

// version is the only Argon2 version written and read (0x13 = 19).
const version = argon2.Version

// Errors.
var (
	// ErrMalformed: the stored string is not an Argon2id PHC string this
	// package can check.
	ErrMalformed = errors.New("password: not an argon2id PHC string")
	// ErrTooLong: the password is longer than MaxLength.
	ErrTooLong = errors.New("password: too long")
)

// Hash is a parsed PHC string.
type Hash struct {
	Params
	Salt, Key []byte
}

// String formats h as a PHC string.
func (h Hash) String() string {
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", version, h.Memory, h.Time, h.Threads,
		b64.EncodeToString(h.Salt), b64.EncodeToString(h.Key))
}

// Parse reads a PHC string of Argon2id, version 19, within the bounds
// above. It never allocates more than the string's length.
func Parse(phc string) (Hash, error) {
	var h Hash
	f := strings.Split(phc, "$")
	if len(phc) > 512 || len(f) != 6 || f[0] != "" || f[1] != "argon2id" || f[2] != "v="+strconv.Itoa(version) {
		return h, ErrMalformed
	}
	seen := 0
	for _, kv := range strings.Split(f[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if !ok || err != nil || (len(v) > 1 && v[0] == '0') {
			return h, ErrMalformed
		}
		switch {
		case k == "m" && seen == 0:
			h.Memory = uint32(n)
		case k == "t" && seen == 1:
			h.Time = uint32(n)
		case k == "p" && seen == 2 && n <= 255:
			h.Threads = uint8(n)
		default:
			return h, ErrMalformed
		}
		seen++
	}
	// The base64 decoder skips CR and LF; a stored hash has neither.
	if strings.ContainsAny(f[4]+f[5], "\r\n") {
		return h, ErrMalformed
	}
	var err1, err2 error
	h.Salt, err1 = base64.RawStdEncoding.Strict().DecodeString(f[4])
	h.Key, err2 = base64.RawStdEncoding.Strict().DecodeString(f[5])
	h.SaltLen, h.KeyLen = uint32(len(h.Salt)), uint32(len(h.Key))
	if seen != 3 || err1 != nil || err2 != nil ||
		h.Memory < 8*uint32(h.Threads) || h.Memory > MaxMemory || h.Time < 1 || h.Time > MaxTime ||
		h.Threads < 1 || h.Threads > MaxThreads ||
		len(h.Salt) < minSalt || len(h.Salt) > maxSalt || len(h.Key) < minKey || len(h.Key) > maxKey {
		return Hash{}, ErrMalformed
	}
	return h, nil
}

// DefaultMaxConcurrent bounds the hashes a Hasher runs at once.
const DefaultMaxConcurrent = 4

// Hasher hashes and verifies passwords. The zero value uses OWASP, the
// system's randomness and DefaultMaxConcurrent; it is safe for concurrent
// use once in use (do not change the fields then).
type Hasher struct {
	Params        Params    // zero: OWASP
	Rand          io.Reader // salts; nil: crypto/rand
	MaxConcurrent int       // zero: DefaultMaxConcurrent

	once  sync.Once
	sem   chan struct{}
	dummy Hash // a hash of nothing anyone knows, with Params
	count atomic.Int64
}

func (h *Hasher) init() {
	h.once.Do(func() {
		if h.Params == (Params{}) {
			h.Params = OWASP
		}
		if h.Rand == nil {
			h.Rand = rand.Reader
		}
		if h.MaxConcurrent <= 0 {
			h.MaxConcurrent = DefaultMaxConcurrent
		}
		h.sem = make(chan struct{}, h.MaxConcurrent)
		// The dummy's salt and key are random: no password matches it.
		d := Hash{Params: h.Params, Salt: make([]byte, h.Params.SaltLen), Key: make([]byte, h.Params.KeyLen)}
		rand.Read(d.Salt)
		rand.Read(d.Key)
		h.dummy = d
	})
}

// Count is the number of Argon2id computations done so far (for tests
// that check that an unknown account costs what a known one does).
func (h *Hasher) Count() int64 { return h.count.Load() }

// derive runs Argon2id once the hasher has a free slot; it returns ctx's
// error if ctx ends first.
func (h *Hasher) derive(ctx context.Context, password string, p Params, salt []byte) ([]byte, error) {
	if len(password) > MaxLength {
		return nil, ErrTooLong
	}
	select {
	case h.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-h.sem }()
	h.count.Add(1)
	return argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLen), nil
}

// Hash returns the PHC string of password with a new random salt.
func (h *Hasher) Hash(ctx context.Context, password string) (string, error) {
	h.init()
	salt := make([]byte, h.Params.SaltLen)
	if _, err := io.ReadFull(h.Rand, salt); err != nil {
		return "", fmt.Errorf("password: salt: %w", err)
	}
	key, err := h.derive(ctx, password, h.Params, salt)
	if err != nil {
		return "", err
	}
	return Hash{Params: h.Params, Salt: salt, Key: key}.String(), nil
}

// Verify checks password against a stored PHC string. rehash is true when
// the password matched but the string was made with other parameters than
// the Hasher's: store a new Hash of it. A malformed string is ErrMalformed.
func (h *Hasher) Verify(ctx context.Context, phc, password string) (ok, rehash bool, err error) {
	h.init()
	stored, err := Parse(phc)
	if err != nil {
		return false, false, err
	}
	key, err := h.derive(ctx, password, stored.Params, stored.Salt)
	if err != nil {
		return false, false, err
	}
	if subtle.ConstantTimeCompare(key, stored.Key) != 1 {
		return false, false, nil
	}
	return true, stored.Params != h.Params, nil
}

// Dummy does the work of a failed Verify against a hash with the
// Hasher's parameters: a login for an address without an account takes
// as long as one with a wrong password (no answer or delay tells which
// addresses have accounts). It always reports false.
func (h *Hasher) Dummy(ctx context.Context, password string) error {
	h.init()
	if len(password) > MaxLength {
		password = password[:MaxLength]
	}
	_, err := h.derive(ctx, password, h.dummy.Params, h.dummy.Salt)
	return err
}
