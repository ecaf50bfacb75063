package coord

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"fmt"
)

// StateCodec transforms a saga's state between the JSON its steps' S
// encodes to and what coord_saga stores, which must be JSON too (the column
// is jsonb). Set it as Options.Codec; every coordinator sharing a log must
// be able to decode what the others encode. Encode is called for each
// write of the state (Run's insert, each action's log record), Decode
// before a run uses a logged state (recovery, a Run that finds the id,
// Retry). The saga id is given so that a codec can bind a state to its
// saga. Errors must not contain the state.
type StateCodec interface {
	Encode(sagaID string, plain []byte) ([]byte, error)
	Decode(sagaID string, stored []byte) ([]byte, error)
}

// Key is a key of a Sealer's key ring: an id stored with every state it
// seals, and a 32-byte AES-256 secret.
type Key struct {
	ID     string
	Secret []byte
}

// Sealer is a StateCodec that seals states with AES-256-GCM (crypto/aes,
// crypto/cipher) under a key ring: the newest key (the last given) seals,
// every key of the ring opens, so keys rotate without downtime (add the
// new key last on every instance; once no saga holds a state sealed with
// the old one, drop it). A sealed state is stored as
// {"sealed": "<key id>", "data": "<base64 of nonce and ciphertext>"}, bound
// to its saga id (GCM's additional data), so it cannot be moved to another
// saga. A state stored before sealing was enabled (any other JSON) is
// opened as it is. A state sealed with a key the ring does not have, or
// that does not open (wrong key, altered), is an error wrapping
// ErrUnsealable: the saga is left as it is in the log.
type Sealer struct {
	newest string
	aeads  map[string]cipher.AEAD
}

var _ StateCodec = (*Sealer)(nil)

// NewSealer returns a Sealer with the key ring keys, oldest first: the last
// seals. It returns an error wrapping ErrInvalid for no keys, a key id
// that is empty, not UTF-8, with a NUL byte or given twice, or a secret
// that is not 32 bytes long.
func NewSealer(keys ...Key) (*Sealer, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: NewSealer: no keys", ErrInvalid)
	}
	s := &Sealer{aeads: make(map[string]cipher.AEAD, len(keys))}
	for _, k := range keys {
		if err := checkText("key id", k.ID); err != nil {
			return nil, err
		}
		if _, dup := s.aeads[k.ID]; dup {
			return nil, fmt.Errorf("%w: NewSealer: key id %q given twice", ErrInvalid, k.ID)
		}
		if len(k.Secret) != 32 {
			return nil, fmt.Errorf("%w: NewSealer: key %q has %d bytes, AES-256 needs 32", ErrInvalid, k.ID, len(k.Secret))
		}
		block, err := aes.NewCipher(k.Secret)
		if err != nil {
			return nil, fmt.Errorf("%w: NewSealer: key %q: %w", ErrInvalid, k.ID, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("%w: NewSealer: key %q: %w", ErrInvalid, k.ID, err)
		}
		s.aeads[k.ID] = aead
		s.newest = k.ID
	}
	return s, nil
}

// sealed is the stored form of a sealed state.
type sealed struct {
	Key  string `json:"sealed"`
	Data []byte `json:"data"` // nonce, then ciphertext and tag
}

func additionalData(sagaID string) []byte { return []byte("coord saga state:" + sagaID) }

// Encode implements StateCodec: it seals plain with the newest key.
func (s *Sealer) Encode(sagaID string, plain []byte) ([]byte, error) {
	aead := s.aeads[s.newest]
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("coord: sealing the state of saga %q: %w", sagaID, err)
	}
	return json.Marshal(sealed{Key: s.newest, Data: aead.Seal(nonce, nonce, plain, additionalData(sagaID))})
}

// Decode implements StateCodec: it opens a sealed state with the key it
// names, and returns any other state as it is.
func (s *Sealer) Decode(sagaID string, stored []byte) ([]byte, error) {
	var env sealed
	if !bytes.Contains(stored, []byte(`"sealed"`)) || json.Unmarshal(stored, &env) != nil || env.Key == "" {
		return stored, nil // stored before sealing was enabled
	}
	aead, ok := s.aeads[env.Key]
	if !ok {
		return nil, fmt.Errorf("%w: the state of saga %q is sealed with key %q, which the key ring does not have", ErrUnsealable, sagaID, env.Key)
	}
	if len(env.Data) < aead.NonceSize() {
		return nil, fmt.Errorf("%w: the sealed state of saga %q is too short", ErrUnsealable, sagaID)
	}
	plain, err := aead.Open(nil, env.Data[:aead.NonceSize()], env.Data[aead.NonceSize():], additionalData(sagaID))
	if err != nil {
		return nil, fmt.Errorf("%w: the state of saga %q does not open with key %q (wrong key, altered, or another saga's): %w", ErrUnsealable, sagaID, env.Key, err)
	}
	return plain, nil
}
