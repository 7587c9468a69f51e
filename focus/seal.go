package focus

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
)

// In the room-prefix form a room's name starts with a client key, and keys
// are never stored in plaintext: such names go into the state file sealed
// (AES-GCM under a key derived from the component secret), beside the
// fingerprint form for people reading the file. Rooms without the separator
// are stored as they are.

const sealedPrefix = "sealed:"

func (f *Focus) sealKey() []byte {
	k := sha256.Sum256([]byte("keyfocus state room names v1\x00" + f.currentSecret()))
	return k[:]
}

// sealRoom returns the form of roomJID the state file keeps.
func (f *Focus) sealRoom(roomJID string) (string, error) {
	if f.logRoom(roomJID) == roomJID {
		return roomJID, nil // no key in it
	}
	block, err := aes.NewCipher(f.sealKey())
	if err != nil {
		return "", err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	out := gcm.Seal(nonce, nonce, []byte(roomJID), nil)
	return sealedPrefix + base64.RawURLEncoding.EncodeToString(out), nil
}

var errSealed = errors.New("a sealed room name cannot be opened with the current component secret (was the secret changed?)")

// openRoom reverses sealRoom.
func (f *Focus) openRoom(stored string) (string, error) {
	if !strings.HasPrefix(stored, sealedPrefix) {
		return stored, nil
	}
	data, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(stored, sealedPrefix))
	if err != nil {
		return "", errSealed
	}
	block, err := aes.NewCipher(f.sealKey())
	if err != nil {
		return "", err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return "", err
	}
	if len(data) < gcm.NonceSize() {
		return "", errSealed
	}
	plain, err := gcm.Open(nil, data[:gcm.NonceSize()], data[gcm.NonceSize():], nil)
	if err != nil {
		return "", errSealed
	}
	return string(plain), nil
}
