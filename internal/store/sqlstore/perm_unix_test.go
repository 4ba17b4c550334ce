//go:build unix

package sqlstore_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/portcullis/portcullis/internal/store"
	"github.com/portcullis/portcullis/internal/store/sqlstore"
)

// TestSQLiteFilesPrivate: the database holds token hashes, sealed keys and the audit trail,
// so a new database file and its -wal and -shm are 0600 whatever the umask, for every way a
// DSN can name the file. The umask is process-wide: this package's tests do not run in
// parallel.
func TestSQLiteFilesPrivate(t *testing.T) {
	for _, umask := range []int{0o022, 0o002, 0} {
		for name, dsn := range map[string]func(path string) string{
			"file uri":           func(p string) string { return "file:" + p },
			"file uri, query":    func(p string) string { return "file:" + p + "?_pragma=cache_size(-2000)" },
			"file uri, absolute": func(p string) string { return "file://" + p },
			"plain path":         func(p string) string { return p },
			"escaped name":       func(p string) string { return "file:" + strings.ReplaceAll(p, "my db", "my%20db") },
		} {
			t.Run(name+"/umask "+fs.FileMode(umask).String(), func(t *testing.T) {
				defer syscall.Umask(syscall.Umask(umask))
				path := filepath.Join(t.TempDir(), "my db.db")
				db := mustOpen(t, sqlstore.Options{Driver: "sqlite", DSN: dsn(path), AutoMigrate: true})
				if err := db.CreateClient(t.Context(), store.Client{ID: "c1", Source: "cli"}, 0); err != nil {
					t.Fatal(err)
				}
				checkModes(t, path, 0o600)
			})
		}
	}
}

// TestSQLiteExistingFileNotWorldReadable: an existing database keeps the owner and group
// access its operator gave it but loses access for every other user, and so do -wal and -shm
// files left from before (SQLite recreates them with the file's mode).
func TestSQLiteExistingFileNotWorldReadable(t *testing.T) {
	defer syscall.Umask(syscall.Umask(0o022))
	path := filepath.Join(t.TempDir(), "s.db")
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.WriteFile(path+suffix, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(path+"-shm", 0o666); err != nil {
		t.Fatal(err)
	}
	db := openSQLite(t, path)
	if err := db.CreateClient(t.Context(), store.Client{ID: "c1", Source: "cli"}, 0); err != nil {
		t.Fatal(err)
	}
	checkModes(t, path, 0o640)
	db.Close()
	db = openSQLite(t, path) // the sidecars were removed at close and are made anew
	if _, err := db.GetClient(t.Context(), "c1"); err != nil {
		t.Fatal(err)
	}
	checkModes(t, path, 0o640)
}

func checkModes(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		fi, err := os.Stat(path + suffix)
		if err != nil {
			t.Errorf("%s: %v", suffix, err)
			continue
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("database file%s: mode %v, want %v", suffix, got, want)
		}
	}
}
