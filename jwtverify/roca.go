package jwtverify

import "math/big"

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
