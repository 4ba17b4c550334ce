package jwtverify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"math/big"
)

var (
	errKeyType       = errors.New("key does not fit the algorithm")
	errSignatureSize = errors.New("signature has the wrong size")
	errBadSignature  = errors.New("signature does not verify")
)

// verifySignature reports (as a nil error) whether sig is a valid alg signature of input under
// key. It is the only signature check in the package: Verify and the Wycheproof tests both call
// it. The math is the standard library's (crypto/ecdsa, crypto/ed25519, crypto/rsa). go-jose
// parses the token but does not verify it here, because its PS256/384/512 check accepts any
// PSS salt length while RFC 7518 §3.5 fixes the salt to the hash size.
//
// ECDSA signatures must be exactly r‖s of the curve's size (64 bytes for ES256); ecdsa.Verify
// rejects r or s outside [1, n-1], so the all-zero "psychic signature" fails.
func verifySignature(alg string, key any, input, sig []byte) error {
	switch alg {
	case "ES256":
		return verifyECDSA(key, elliptic.P256(), 32, digest(crypto.SHA256, input), sig)
	case "ES384":
		return verifyECDSA(key, elliptic.P384(), 48, digest(crypto.SHA384, input), sig)
	case "ES512":
		return verifyECDSA(key, elliptic.P521(), 66, digest(crypto.SHA512, input), sig)
	case "EdDSA":
		pub, ok := key.(ed25519.PublicKey)
		if !ok || len(pub) != ed25519.PublicKeySize {
			return errKeyType
		}
		if len(sig) != ed25519.SignatureSize {
			return errSignatureSize
		}
		if !ed25519.Verify(pub, input, sig) {
			return errBadSignature
		}
		return nil
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		pub, ok := key.(*rsa.PublicKey)
		if !ok || pub == nil || pub.N == nil || pub.N.BitLen() < minRSABits {
			return errKeyType
		}
		if len(sig) != (pub.N.BitLen()+7)/8 {
			return errSignatureSize
		}
		h := rsaHash(alg)
		d := digest(h, input)
		var err error
		if alg[0] == 'R' {
			err = rsa.VerifyPKCS1v15(pub, h, d, sig)
		} else {
			err = rsa.VerifyPSS(pub, h, d, sig, &rsa.PSSOptions{SaltLength: h.Size(), Hash: h})
		}
		if err != nil {
			return errBadSignature
		}
		return nil
	}
	return errKeyType
}

func verifyECDSA(key any, curve elliptic.Curve, size int, d, sig []byte) error {
	pub, ok := key.(*ecdsa.PublicKey)
	if !ok || pub == nil || pub.Curve != curve {
		return errKeyType
	}
	if len(sig) != 2*size {
		return errSignatureSize
	}
	r := new(big.Int).SetBytes(sig[:size])
	s := new(big.Int).SetBytes(sig[size:])
	if !ecdsa.Verify(pub, d, r, s) {
		return errBadSignature
	}
	return nil
}

func rsaHash(alg string) crypto.Hash {
	switch alg[2:] {
	case "384":
		return crypto.SHA384
	case "512":
		return crypto.SHA512
	}
	return crypto.SHA256
}

func digest(h crypto.Hash, input []byte) []byte {
	switch h {
	case crypto.SHA384:
		d := sha512.Sum384(input)
		return d[:]
	case crypto.SHA512:
		d := sha512.Sum512(input)
		return d[:]
	}
	d := sha256.Sum256(input)
	return d[:]
}
