package config

import (
	"strings"
	"testing"
	"time"
)

func TestCacheSection(t *testing.T) {
	for _, tc := range []struct {
		name        string
		cache       string
		wantTimeout time.Duration
		wantProblem string // a problem at this path, or none
	}{
		{"memory by default", "", 100 * time.Millisecond, ""},
		{"redis with defaults", `cache: { driver: redis, url: "redis://127.0.0.1:6379/0" }`, 100 * time.Millisecond, ""},
		{"redis with a timeout", `cache: { driver: redis, url: "redis://127.0.0.1:6379/0", timeout: 250ms }`, 250 * time.Millisecond, ""},
		{"timeout too long", `cache: { driver: redis, url: "redis://127.0.0.1:6379/0", timeout: 30s }`, 0, "cache.timeout"},
		{"negative timeout", `cache: { driver: redis, url: "redis://127.0.0.1:6379/0", timeout: -1s }`, 0, "cache.timeout"},
		{"redis without url", `cache: { driver: redis }`, 0, "cache.url"},
		{"unknown driver", `cache: { driver: memcached }`, 0, "cache.driver"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(validIssuerYAML+tc.cache+"\n"), issuerDir(t), noEnv)
			if tc.wantProblem != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantProblem) {
					t.Fatalf("err = %v, want a problem at %s", err, tc.wantProblem)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Cache.Timeout != tc.wantTimeout {
				t.Errorf("cache.timeout = %v, want %v", c.Cache.Timeout, tc.wantTimeout)
			}
		})
	}
}
