package sqlstore

import (
	"context"
	"embed"
	"fmt"
	"hash/fnv"
	"io/fs"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

// migrations holds one directory of forward-only SQL migrations per dialect. Both directories
// carry the same versions (a test checks it); only the types differ.
//
//go:embed migrations/sqlite/*.sql migrations/postgres/*.sql
var migrations embed.FS

// versionTable records applied migrations (goose's bookkeeping).
const versionTable = "portcullis_migrations"

// Migrate applies every pending migration and returns the versions it applied, oldest first.
// It is what `portcullis migrate` runs. On PostgreSQL concurrent runs (replicas starting
// together) wait for each other on a session advisory lock, so each version runs once.
func Migrate(ctx context.Context, o Options) (applied []int64, err error) {
	db, err := connect(ctx, o)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return db.migrate(ctx)
}

// MigrationStatus reports the schema version of the database and how many migrations this
// binary knows that it has not applied.
func (db *DB) MigrationStatus(ctx context.Context) (current int64, pending int, err error) {
	p, err := db.provider()
	if err != nil {
		return 0, 0, err
	}
	return db.status(ctx, p)
}

func (db *DB) status(ctx context.Context, p *goose.Provider) (current int64, pending int, err error) {
	ctx, cancel := db.ctx(ctx)
	defer cancel()
	st, err := p.Status(ctx)
	if err != nil {
		return 0, 0, db.wrap("migration status", err)
	}
	for _, s := range st {
		if s.State == goose.StatePending {
			pending++
		}
	}
	current, err = p.GetDBVersion(ctx)
	if err != nil {
		return 0, 0, db.wrap("migration status", err)
	}
	return current, pending, nil
}

func (db *DB) provider() (*goose.Provider, error) {
	fsys, err := fs.Sub(migrations, "migrations/"+db.d.name)
	if err != nil {
		return nil, err
	}
	opts := []goose.ProviderOption{
		goose.WithTableName(versionTable),
		goose.WithDisableGlobalRegistry(true),
		goose.WithSlog(db.log),
	}
	if db.d.name == "postgres" {
		// One lock per schema, polled every second for up to two minutes.
		h := fnv.New64a()
		h.Write([]byte("portcullis-migrate\x00" + db.schema))
		l, err := lock.NewPostgresSessionLocker(lock.WithLockID(int64(h.Sum64()>>1)), lock.WithLockTimeout(1, 120))
		if err != nil {
			return nil, err
		}
		opts = append(opts, goose.WithSessionLocker(l))
	}
	// Migrations run on the writer: on SQLite it is the only connection allowed to write.
	return goose.NewProvider(db.d.goose, db.w, fsys, opts...)
}

func (db *DB) migrate(ctx context.Context) ([]int64, error) {
	p, err := db.provider()
	if err != nil {
		return nil, err
	}
	// Migrations may take longer than a query; the caller's context bounds them.
	res, err := p.Up(ctx)
	if err != nil {
		return nil, db.wrap("migrate", err)
	}
	var applied []int64
	for _, r := range res {
		applied = append(applied, r.Source.Version)
		db.log.Info("applied migration", "version", r.Source.Version, "duration", r.Duration)
	}
	return applied, nil
}

// ensureSchema migrates (auto) or checks that nothing is pending.
func (db *DB) ensureSchema(ctx context.Context, auto bool) error {
	if auto {
		_, err := db.migrate(ctx)
		return err
	}
	p, err := db.provider()
	if err != nil {
		return err
	}
	current, pending, err := db.status(ctx, p)
	if err != nil {
		return err
	}
	if pending > 0 {
		return fmt.Errorf("sqlstore: database schema is at version %d with %d migration(s) pending: run `portcullis migrate` (or set storage.auto_migrate: true)", current, pending)
	}
	var latest int64
	for _, s := range p.ListSources() {
		latest = max(latest, s.Version)
	}
	if current > latest {
		return fmt.Errorf("sqlstore: database schema version %d is newer than this binary knows (%d): upgrade portcullis", current, latest)
	}
	return nil
}
