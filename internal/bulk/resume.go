package bulk

import (
	"bufio"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"os"
)

// Set is a set of domain names kept as 64-bit hashes (about 20 bytes a
// name whatever its length), for duplicate detection and --resume. Two
// names share a hash with a chance of about n²/2⁶⁵ (one in 37 million for a
// million names); the seed is chosen per run, so a collision does not
// repeat.
type Set struct {
	seed maphash.Seed
	m    map[uint64]struct{}
}

// NewSet returns an empty set.
func NewSet() *Set { return &Set{seed: maphash.MakeSeed(), m: map[uint64]struct{}{}} }

// Add adds name and reports whether it was new.
func (s *Set) Add(name string) bool {
	h := maphash.String(s.seed, name)
	if _, ok := s.m[h]; ok {
		return false
	}
	s.m[h] = struct{}{}
	return true
}

// Has reports whether name is in the set.
func (s *Set) Has(name string) bool {
	_, ok := s.m[maphash.String(s.seed, name)]
	return ok
}

// Len returns the number of names.
func (s *Set) Len() int { return len(s.m) }

// Resumed is what LoadDone found in an output file.
type Resumed struct {
	Done      *Set
	Records   int   // whole records found
	CutBytes  int64 // bytes of a cut-off last record dropped (0 if none)
	HasHeader bool  // a CSV file that already has its header line
}

// LoadDone reads the records of an output file that --resume continues
// and, when the last record was cut off (a run killed in the middle of
// writing it; it has no line end), truncates the file before it, so that
// appending leaves only whole records. A line before the last that is not
// a record of format is an *InputError: the file is not one of ours, and
// nothing is changed.
func LoadDone(f *os.File, format string) (*Resumed, error) {
	res := &Resumed{Done: NewSet()}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(f, 1<<20)
	var off int64
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			if len(line) > 0 {
				res.CutBytes = int64(len(line))
			}
			break
		}
		if err != nil {
			return nil, err
		}
		off += int64(len(line))
		if n == 1 && format == FormatCSV {
			if string(line) != string(EncodeCSVHeader()) {
				return nil, badInput("%s line 1 is not the CSV header of mailtls check --format csv", f.Name())
			}
			res.HasHeader = true
			continue
		}
		name, ok := recordDomain(format, line)
		if !ok {
			return nil, badInput("%s line %d is not a %s record of mailtls check; not resuming into it", f.Name(), n, format)
		}
		res.Done.Add(name)
		res.Records++
	}
	if res.CutBytes > 0 {
		if err := f.Truncate(off); err != nil {
			return nil, fmt.Errorf("bulk: dropping the cut-off last record of %s: %w", f.Name(), err)
		}
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		return nil, err
	}
	return res, nil
}
