package jwtverify

import (
	"math/big"
	"sync"
	"sync/atomic"
)

// The ROCA weakness (CVE-2017-15361): Infineon's RSA library built its primes as
// k·M + (65537^a mod M), M a primorial, which makes such moduli factorable. Both primes, and
// so the modulus, are then powers of 65537 modulo every small prime dividing M. Every
// primorial the library used is divisible by all the primes up to 167, so a modulus whose
// residue modulo each of them lies in the subgroup 65537 generates there carries the
// fingerprint; a modulus from a sound generator almost never does.
var rocaPrimes = []int64{3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71,
	73, 79, 83, 89, 97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167}

// rocaResidues[i][r] is true when r is a power of 65537 modulo rocaPrimes[i].
var rocaResidues = func() [][]bool {
	out := make([][]bool, len(rocaPrimes))
	for i, p := range rocaPrimes {
		in := make([]bool, p)
		g := 65537 % p
		for x := int64(1); !in[x]; x = x * g % p {
			in[x] = true
		}
		out[i] = in
	}
	return out
}()

// rocaFingerprint reports whether the RSA modulus n has the ROCA fingerprint.
func rocaFingerprint(n *big.Int) bool {
	var p, r big.Int
	for i, q := range rocaPrimes {
		r.Mod(n, p.SetInt64(q))
		if !rocaResidues[i][r.Int64()] {
			return false
		}
	}
	return true
}

// rocaChecked remembers the verdict per modulus (by pointer: keys are not modified once
// built), so the check runs once per key, not once per verification. It is cleared when it
// passes rocaCheckedMax entries, which bounds it whatever a KeySource returns.
var (
	rocaChecked  sync.Map // *big.Int → bool
	rocaCheckedN atomic.Int64
)

const rocaCheckedMax = 4096

// rocaFingerprintOnce is rocaFingerprint, remembered.
func rocaFingerprintOnce(n *big.Int) bool {
	if v, ok := rocaChecked.Load(n); ok {
		return v.(bool)
	}
	r := rocaFingerprint(n)
	if rocaCheckedN.Add(1) > rocaCheckedMax {
		rocaChecked.Clear()
		rocaCheckedN.Store(1)
	}
	rocaChecked.Store(n, r)
	return r
}
