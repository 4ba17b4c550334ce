package storetest

import (
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/store"
)

func sampleKey(id string, created time.Time) store.SigningKey {
	return store.SigningKey{
		ID:            id,
		Algorithm:     "ES256",
		PublicJWK:     []byte(`{"kty":"EC","crv":"P-256","kid":"` + id + `","x":"x","y":"y"}`),
		PrivateSealed: []byte{0x00, 0x01, 0xfe, 0xff, 'k', 'e', 'y'},
		CreatedAt:     created,
		SignFrom:      created.Add(time.Hour),
		RetireAt:      created.Add(30 * 24 * time.Hour),
		RemoveAt:      created.Add(31 * 24 * time.Hour),
	}
}

func listKeys(t *testing.T, s store.Store) []store.SigningKey {
	t.Helper()
	ks, err := s.ListKeys(t.Context())
	must(t, "list keys", err)
	return ks
}

func setKeys(ks ...store.SigningKey) func([]store.SigningKey) ([]store.SigningKey, error) {
	return func([]store.SigningKey) ([]store.SigningKey, error) { return ks, nil }
}

var keyTests = []test{
	{"empty", func(t *testing.T, s store.Store) {
		if ks := listKeys(t, s); len(ks) != 0 {
			t.Fatalf("new store has %d keys", len(ks))
		}
	}},
	{"round_trip_every_field_in_order", func(t *testing.T, s store.Store) {
		k2, k1 := sampleKey("k2", base), sampleKey("k1", base.Add(time.Hour))
		allFieldsSet(t, k1)
		got, err := s.UpdateKeys(t.Context(), setKeys(k2, k1))
		must(t, "update keys", err)
		same(t, "returned", []store.SigningKey{k2, k1}, got)
		same(t, "listed", []store.SigningKey{k2, k1}, listKeys(t, s))
	}},
	{"update_sees_current_and_deletes_absent", func(t *testing.T, s store.Store) {
		k1, k2, k3 := sampleKey("k1", base), sampleKey("k2", base.Add(time.Hour)), sampleKey("k3", base.Add(2*time.Hour))
		_, err := s.UpdateKeys(t.Context(), setKeys(k1, k2))
		must(t, "update 1", err)
		var seen []store.SigningKey
		k2b := k2
		k2b.RetireAt = base.Add(5 * time.Hour)
		_, err = s.UpdateKeys(t.Context(), func(old []store.SigningKey) ([]store.SigningKey, error) {
			seen = old
			return []store.SigningKey{k2b, k3}, nil
		})
		must(t, "update 2", err)
		same(t, "fn input", []store.SigningKey{k1, k2}, seen)
		same(t, "listed", []store.SigningKey{k2b, k3}, listKeys(t, s))
	}},
	{"update_fn_error_aborts", func(t *testing.T, s store.Store) {
		k1 := sampleKey("k1", base)
		_, err := s.UpdateKeys(t.Context(), setKeys(k1))
		must(t, "update 1", err)
		_, err = s.UpdateKeys(t.Context(), func(old []store.SigningKey) ([]store.SigningKey, error) {
			return append(old, sampleKey("k2", base)), errFromFn
		})
		wantErr(t, "update", err, errFromFn)
		same(t, "listed", []store.SigningKey{k1}, listKeys(t, s))
	}},
	{"update_invalid_result_aborts", func(t *testing.T, s store.Store) {
		k1 := sampleKey("k1", base)
		_, err := s.UpdateKeys(t.Context(), setKeys(k1))
		must(t, "update 1", err)
		for name, ks := range map[string][]store.SigningKey{
			"empty_id":     {sampleKey("k2", base), sampleKey("", base)},
			"repeated_id":  {sampleKey("k2", base), sampleKey("k2", base)},
			"nul_in_id":    {sampleKey("k\x00", base)},
			"no_algorithm": {{ID: "k3", CreatedAt: base}},
		} {
			_, err := s.UpdateKeys(t.Context(), setKeys(ks...))
			wantErr(t, name, err, store.ErrInvalid)
			same(t, "listed after "+name, []store.SigningKey{k1}, listKeys(t, s))
		}
	}},
	{"concurrent_rotations_create_one_key", func(t *testing.T, s store.Store) {
		old := sampleKey("old", base)
		_, err := s.UpdateKeys(t.Context(), setKeys(old))
		must(t, "seed", err)
		cutoff := base.Add(24 * time.Hour)
		created := make([]bool, concurrency)
		errs := race(s, concurrency, func(i int) error {
			_, err := s.UpdateKeys(t.Context(), func(ks []store.SigningKey) ([]store.SigningKey, error) {
				created[i] = false // fn may run again if a backend retries
				// Hold the decision open a moment, as a real rotation (key generation,
				// sealing) does: a backend that lets two functions overlap shows it.
				time.Sleep(2 * time.Millisecond)
				for _, k := range ks {
					if !k.CreatedAt.Before(cutoff) {
						return ks, nil // someone rotated already
					}
				}
				created[i] = true
				return append(ks, sampleKey(id("new", i), cutoff)), nil
			})
			return err
		})
		winners(t, errs)
		ks := listKeys(t, s)
		if len(ks) != 2 || ks[0].ID != "old" {
			t.Fatalf("after %d concurrent rotations the key set is %d keys (want old + one new)", concurrency, len(ks))
		}
		n := 0
		for _, c := range created {
			if c {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%d rotation functions saw no new key, want exactly 1", n)
		}
	}},
}
