package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// WriteJSON writes the run as indented JSON, with the derived values
// described in the package documentation.
func WriteJSON(w io.Writer, r Run) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("report: write JSON: %w", err)
	}
	return nil
}

// ReadJSON reads a run that WriteJSON wrote.
func ReadJSON(rd io.Reader) (Run, error) {
	var r Run
	if err := json.NewDecoder(rd).Decode(&r); err != nil {
		return Run{}, fmt.Errorf("report: read JSON: %w", err)
	}
	return r, nil
}

// Name returns the base name of the run's report files, without
// extension: "<kind>-<plan>-<start>", the start in UTC as
// yyyymmddThhmmss. Characters other than letters, digits, '.', '_' and
// '-' in the kind and plan become '_'.
func Name(r Run) string {
	return safeName(string(r.Kind)) + "-" + safeName(r.Plan) + "-" + r.Start.UTC().Format("20060102T150405")
}

// Write writes the run's JSON and HTML reports into dir as
// Name(r)+".json" and Name(r)+".html" and returns their paths. Each file is
// written to a temporary file in dir and renamed into place only when both
// are complete, so a reader never sees a partial file; an existing report
// of the same name is replaced. If the second rename fails, the first file
// is removed again and no report is left.
func Write(dir string, r Run) (jsonPath, htmlPath string, err error) {
	base := filepath.Join(dir, Name(r))
	jsonPath, htmlPath = base+".json", base+".html"
	var jb, hb bytes.Buffer
	if err := WriteJSON(&jb, r); err != nil {
		return "", "", err
	}
	if err := WriteHTML(&hb, r); err != nil {
		return "", "", err
	}
	jt, err := writeTemp(dir, jb.Bytes())
	if err != nil {
		return "", "", err
	}
	ht, err := writeTemp(dir, hb.Bytes())
	if err != nil {
		os.Remove(jt)
		return "", "", err
	}
	if err := os.Rename(jt, jsonPath); err != nil {
		return "", "", errors.Join(fmt.Errorf("report: %w", err), os.Remove(jt), os.Remove(ht))
	}
	if err := os.Rename(ht, htmlPath); err != nil {
		return "", "", errors.Join(fmt.Errorf("report: %w", err), os.Remove(ht), os.Remove(jsonPath))
	}
	syncDir(dir)
	return jsonPath, htmlPath, nil
}

// syncDir makes the renames durable where the platform allows; a failure
// only weakens durability, not atomicity, so it is ignored.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// writeTemp writes b to a new temporary file in dir, synced and readable by
// all, and returns its path.
func writeTemp(dir string, b []byte) (string, error) {
	f, err := os.CreateTemp(dir, ".report-*.tmp")
	if err != nil {
		return "", fmt.Errorf("report: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("report: %w", err)
	}
	return f.Name(), nil
}

func safeName(s string) string {
	if s == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			return r
		}
		return '_'
	}, s)
}
