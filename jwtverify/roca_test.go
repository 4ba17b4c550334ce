package jwtverify

import (
	"crypto/rand"
	"crypto/rsa"
	"math/big"
	"testing"
)

// A modulus built the way the vulnerable library built its primes carries the fingerprint;
// moduli from crypto/rsa do not.
func TestROCAFingerprint(t *testing.T) {
	m := big.NewInt(1)
	for _, p := range rocaPrimes {
		m.Mul(m, big.NewInt(p))
	}
	prime := func(k, a int64) *big.Int { // k·M + (65537^a mod M)
		v := new(big.Int).Exp(big.NewInt(65537), big.NewInt(a), m)
		return v.Add(v, new(big.Int).Mul(big.NewInt(k), m))
	}
	for _, ka := range [][4]int64{{1, 3, 2, 5}, {97, 1001, 12345, 77}, {1 << 40, 1 << 20, 3, 1 << 30}} {
		n := new(big.Int).Mul(prime(ka[0], ka[1]), prime(ka[2], ka[3]))
		if !rocaFingerprint(n) {
			t.Errorf("ROCA-shaped modulus %v not flagged", ka)
		}
		// Off the pattern by a little is enough to clear it.
		if rocaFingerprint(n.Add(n, big.NewInt(2))) {
			t.Errorf("modulus %v+2 flagged", ka)
		}
	}
	for range 8 {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		if rocaFingerprint(k.N) {
			t.Fatal("a crypto/rsa modulus was flagged")
		}
	}
	// Every prime's subgroup holds 1 and is closed under multiplication by 65537.
	for i, p := range rocaPrimes {
		in := rocaResidues[i]
		if !in[1] || in[0] {
			t.Fatalf("p=%d: subgroup must hold 1 and not 0", p)
		}
		for r := range p {
			if in[r] && !in[r*(65537%p)%p] {
				t.Fatalf("p=%d: %d in the subgroup but %d·65537 not", p, r, r)
			}
		}
	}
}
