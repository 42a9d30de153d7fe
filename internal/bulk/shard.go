package bulk

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
)

// Shard is the i-th (1-based) of n stable partitions of the input. The
// zero value takes everything.
type Shard struct {
	I, N int
}

// InputError says why bulk input cannot be used (a shard, an output file
// to resume into); Reason is meant for the user as it stands.
type InputError struct {
	Reason string
}

func (e *InputError) Error() string { return "bulk: " + e.Reason }

func badInput(format string, args ...any) error {
	return &InputError{Reason: fmt.Sprintf(format, args...)}
}

// ParseShard parses "i/n" with 1 <= i <= n; it returns an *InputError for
// anything else.
func ParseShard(s string) (Shard, error) {
	a, b, ok := strings.Cut(s, "/")
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || n < 1 || i < 1 || i > n {
		return Shard{}, badInput("shard %q: want i/n with 1 <= i <= n, e.g. 1/4", s)
	}
	return Shard{I: i, N: n}, nil
}

// Has reports whether the A-label domain name belongs to the shard. The
// partition is FNV-1a (64 bits) of the name modulo n: it depends on nothing
// but the name, so every machine and every version puts a domain in the same
// shard, and the shards of one list never overlap.
func (s Shard) Has(name string) bool {
	if s.N <= 1 {
		return true
	}
	h := fnv.New64a()
	h.Write([]byte(name))
	return int(h.Sum64()%uint64(s.N)) == s.I-1
}

func (s Shard) String() string {
	if s.N <= 1 {
		return ""
	}
	return fmt.Sprintf("%d/%d", s.I, s.N)
}
