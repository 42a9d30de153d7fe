package mtasts

import (
	"slices"
	"strconv"
	"time"
)

// NewID makes a policy id from the time: UTC "YYYYMMDDhhmmss" (RFC 8461
// §3.1 allows 1–32 letters and digits and implies no ordering). When the
// result equals one of avoid (the published id, or one made earlier in the
// same second) a numeric suffix is added, so the id always changes.
func NewID(now time.Time, avoid ...string) string {
	base := now.UTC().Format("20060102150405")
	id := base
	for n := 1; slices.Contains(avoid, id); n++ {
		id = base + strconv.Itoa(n)
	}
	return id
}
