package tokencheck

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
)

// Sealed values in the shared cache: version byte, 12-byte nonce, AES-256-GCM ciphertext of
// the issuer's signed answer, with the token hash as additional data.
//
// The key is derived from the opaque token itself, which the shared store never sees (it
// sees only the token's SHA-256). So someone who can read the store learns no phantom JWT
// (each one a bearer credential for the upstreams), and someone who can write it cannot make
// a value that opens under another token's key: moving an entry to another hash, or writing
// one for a token of their choosing with an answer they lifted, fails to open. The issuer's
// signature, checked again on every read, stops anything the issuer never signed.
const (
	sealVersion  = 1
	sealNonce    = 12
	sealOverhead = 1 + sealNonce + 16
	sealInfo     = "portcullis tokencheck shared introspection cache v1"
	// maxSealed bounds what is read back: a sealed answer is never larger.
	maxSealed = maxIntrospectionBytes + sealOverhead
)

func sealAEAD(token string) (cipher.AEAD, error) {
	key, err := hkdf.Key(sha256.New, []byte(token), nil, sealInfo, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal encrypts answer for the token whose hash is hash.
func seal(token, hash string, answer []byte) ([]byte, error) {
	aead, err := sealAEAD(token)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+sealNonce, len(answer)+sealOverhead)
	out[0] = sealVersion
	_, _ = rand.Read(out[1 : 1+sealNonce]) // crypto/rand never fails
	return aead.Seal(out, out[1:1+sealNonce], answer, []byte(hash)), nil
}

// unseal returns the answer sealed for token under hash, or false if v is not such a value.
func unseal(token, hash string, v []byte) ([]byte, bool) {
	if len(v) < sealOverhead || len(v) > maxSealed || v[0] != sealVersion {
		return nil, false
	}
	aead, err := sealAEAD(token)
	if err != nil {
		return nil, false
	}
	out, err := aead.Open(nil, v[1:1+sealNonce], v[1+sealNonce:], []byte(hash))
	if err != nil {
		return nil, false
	}
	return out, true
}
