package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBinaryExitCodes checks the real process's exit codes (0 ok, 2 bad usage or config);
// internal/app tests every command in process.
func TestBinaryExitCodes(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("issuer:\n  url: http://x\n  nonsense: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		want    int
		wantOut string // in stdout
		wantErr string // in stderr
	}{
		{"help", []string{"--help"}, 0, "Usage:", ""},
		{"version", []string{"version"}, 0, "portcullis ", ""},
		{"serve --help", []string{"serve", "--help"}, 0, "Usage: portcullis serve", ""},
		{"no command", nil, 2, "", "Usage:"},
		{"unknown command", []string{"frobnicate"}, 2, "", "unknown command"},
		{"unknown flag", []string{"check", "--nope"}, 2, "", "flag provided but not defined"},
		{"check a bad config", []string{"check", "--config", bad}, 2, "line 3: issuer.nonsense", ""},
		{"serve a bad config", []string{"serve", "--config", bad}, 2, "", "line 3: issuer.nonsense"},
		{"missing config", []string{"check", "--config", filepath.Join(dir, "missing.yaml")}, 2, "no such file", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, "", tt.args...)
			if code != tt.want {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.want, stdout, stderr)
			}
			if !strings.Contains(stdout, tt.wantOut) || !strings.Contains(stderr, tt.wantErr) {
				t.Errorf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
			}
		})
	}
}
