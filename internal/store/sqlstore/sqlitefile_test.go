package sqlstore

import "testing"

// TestSQLiteFile: the file a DSN names is the one SQLite opens, and names SQLite must not
// create (read-only, read-write without create, memory, another vfs or host) are left alone.
func TestSQLiteFile(t *testing.T) {
	tests := []struct {
		dsn, want string
		ok        bool
	}{
		{"file:portcullis.db", "portcullis.db", true},
		{"file:portcullis.db?_pragma=busy_timeout(5000)&mode=rwc", "portcullis.db", true},
		{"file:/var/lib/p/p.db#frag", "/var/lib/p/p.db", true},
		{"file:///var/lib/p/p.db", "/var/lib/p/p.db", true},
		{"file://localhost/var/lib/p/p.db", "/var/lib/p/p.db", true},
		{"file:my%20db.db", "my db.db", true},
		{"/var/lib/p/p.db?mode=ro", "/var/lib/p/p.db", true}, // the driver drops a plain name's query
		{"p.db", "p.db", true},
		{"file:p.db?mode=ro", "", false},
		{"file:p.db?mode=rw", "", false},
		{"file:p.db?mode=memory", "", false},
		{"file:p.db?vfs=memdb", "", false},
		{"file://host.example/p.db", "", false},
		{"file:p%zz.db", "", false},
		{"file:p%00.db", "", false},
		{"file::memory:", "", false},
		{":memory:", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		got, ok := sqliteFile(tt.dsn)
		if got != tt.want || ok != tt.ok {
			t.Errorf("sqliteFile(%q) = %q, %v; want %q, %v", tt.dsn, got, ok, tt.want, tt.ok)
		}
	}
}
