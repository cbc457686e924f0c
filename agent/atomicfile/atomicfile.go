// Package atomicfile writes files so that a reader or a crash sees either
// the old content or the new one, never a partial file: data goes to a
// temporary file in the same directory, is synced, then renamed (or linked)
// into place.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// ErrExists is returned by WriteNew when path already exists.
var ErrExists = errors.New("already exists")

// Write replaces path with data, creating the parent directory (0700) if
// needed.
func Write(path string, data []byte, mode fs.FileMode) error {
	return write(path, data, mode, os.Rename)
}

// WriteNew writes data to path only if path does not exist yet; of two
// concurrent writers exactly one wins and the other gets ErrExists.
func WriteNew(path string, data []byte, mode fs.FileMode) error {
	return write(path, data, mode, func(tmp, path string) error {
		err := os.Link(tmp, path)
		if errors.Is(err, fs.ErrExist) {
			return ErrExists
		}
		return err
	})
}

func write(path string, data []byte, mode fs.FileMode, place func(tmp, path string) error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after a rename; removes the temp name after a link
	if err := writeAndSync(tmp, data, mode); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := place(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func writeAndSync(f *os.File, data []byte, mode fs.FileMode) error {
	err := f.Chmod(mode)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	return err
}
