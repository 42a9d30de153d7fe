package certstorage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// MaxImportFile caps each file read from a certmagic folder: its files are
// keys, certificates, their metadata and OCSP staples, a few KB each.
const MaxImportFile = 1 << 20

// ImportStats counts what ImportDir did with the files of a folder.
type ImportStats struct {
	Copied int // absent from the database, copied
	Same   int // already in the database with the same content
	Kept   int // in the database with other content, left as it is
}

// ImportDir copies the files of a certmagic FileStorage folder (the host
// role's host.storage/certmagic) into the database, under the same keys,
// so that instances moving to PostgreSQL find the certificates and the
// ACME account instead of ordering every certificate again. A key the
// database holds already is left as it is (an instance on the database
// wrote it, so it is at least as recent): running it again copies
// nothing. FileStorage's lock files (locks/) are not copied; symbolic
// links and files larger than MaxImportFile are refused with their name.
func (s *Postgres) ImportDir(ctx context.Context, dir string) (ImportStats, error) {
	var st ImportStats
	root, err := os.OpenRoot(dir)
	if err != nil {
		return st, fmt.Errorf("certstorage: %w", err)
	}
	defer root.Close()
	err = fs.WalkDir(root.FS(), ".", func(name string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case ctx.Err() != nil:
			return ctx.Err()
		case d.IsDir() && name == "locks":
			return fs.SkipDir
		case d.IsDir():
			return nil
		case !d.Type().IsRegular():
			return fmt.Errorf("%s is not a regular file", filepath.Join(dir, name))
		}
		value, err := readCapped(root, name)
		if err != nil {
			return fmt.Errorf("%s: %w", filepath.Join(dir, name), err)
		}
		key, err := cleanKey(name)
		if err != nil {
			return err
		}
		tag, err := s.pool.Exec(ctx, `INSERT INTO certmagic_data (key, value, modified) VALUES ($1, $2, now())
			ON CONFLICT (key) DO NOTHING`, key, value)
		if err != nil {
			return fmt.Errorf("certstorage: import %s: %w", key, err)
		}
		if tag.RowsAffected() == 1 {
			st.Copied++
			return nil
		}
		have, err := s.Load(ctx, key)
		switch {
		case err != nil:
			return err
		case bytes.Equal(have, value):
			st.Same++
		default:
			st.Kept++
		}
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("certstorage: importing %s: %w", dir, err)
	}
	return st, nil
}

func readCapped(root *os.Root, name string) ([]byte, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxImportFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxImportFile {
		return nil, errors.New("larger than 1 MiB: not a file certmagic wrote")
	}
	return b, nil
}
