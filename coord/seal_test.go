package coord

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func key(id string, b byte) Key { return Key{ID: id, Secret: bytes.Repeat([]byte{b}, 32)} }

func sealer(t *testing.T, keys ...Key) *Sealer {
	t.Helper()
	s, err := NewSealer(keys...)
	require.NoError(t, err)
	return s
}

// rawState returns the state column of the saga id as stored, and the key
// id it names.
func rawState(t *testing.T, f *fixture, id string) (string, string) {
	t.Helper()
	var state, kid string
	require.NoError(t, f.pool.QueryRow(context.Background(),
		`select state::text, coalesce(state->>'sealed', '') from coord_saga where id = $1`, id).Scan(&state, &kid))
	return state, kid
}

func TestSealer_NoByteOfTheSecretReachesTheLogOrTheHistory(t *testing.T) {
	f := newFixture(t)
	c, h := f.coordinator(t, Options{Codec: sealer(t, key("k1", 1))})
	const secret = "s3cr3t-value@example.com" // the state's Email
	f.fail(stepWelcome, false, 1)             // a failed try in the history too
	_, err := h.Run(context.Background(), "u1", &regState{UserID: "u1", Email: secret})
	require.NoError(t, err)

	var rows string
	require.NoError(t, f.pool.QueryRow(context.Background(),
		`select (select string_agg(row_to_json(s)::text, ' ') from coord_saga s) || (select string_agg(row_to_json(h)::text, ' ') from coord_history h)`).Scan(&rows))
	require.Contains(t, rows, "u1", "the rows were read")
	for _, part := range []string{secret, "s3cr3t", "example.com"} {
		assert.NotContains(t, rows, part)
	}
	_, kid := rawState(t, f, "u1")
	assert.Equal(t, "k1", kid)
	shown, err := c.StoredState(context.Background(), "u1")
	require.NoError(t, err)
	assert.NotContains(t, string(shown), "s3cr3t", "StoredState shows the sealed form")
	assert.Contains(t, string(shown), `"sealed": "k1"`)

	var got regState
	_, err = h.Run(context.Background(), "u1", &got)
	require.NoError(t, err)
	assert.Equal(t, regState{UserID: "u1", Email: secret}, got, "Run of the finished saga opens its state")
}

// TestSealer_RotatesKeysWithoutDowntime seals with key 1, adds key 2 (which
// then seals, while key 1 still opens), then drops key 1: a state sealed
// with it gives ErrUnsealable and the saga is left untouched.
func TestSealer_RotatesKeysWithoutDowntime(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	k1, k2 := key("k1", 1), key("k2", 2)
	cutAfterWelcome := func(p crashPoint) bool { return p == crashPoint{stageAfterLog, stepWelcome} }

	// Key 1 only: the run of a saga is cut mid-way.
	_, h1 := f.coordinator(t, Options{Owner: "one", LeaseDuration: testLease, Codec: sealer(t, k1), crashAt: cutAfterWelcome})
	cut := func(id string) {
		_, err := h1.Run(ctx, id, &regState{UserID: id, Email: id + "@example.com"})
		require.ErrorIs(t, err, errCrashed)
		_, kid := rawState(t, f, id)
		require.Equal(t, "k1", kid)
	}
	cut("u1")

	// Keys 1 and 2: key 1 opens u1, key 2 seals its next states.
	c2, _ := f.coordinator(t, Options{Owner: "two", LeaseDuration: testLease, Codec: sealer(t, k1, k2)})
	info := recoverUntilFinal(t, c2, "u1")
	require.Equal(t, StatusSucceeded, info.Status)
	_, kid := rawState(t, f, "u1")
	assert.Equal(t, "k2", kid)
	assert.Equal(t, allApplied, f.effects(t, "u1"))

	// Key 2 only: u1 opens; u2, sealed with key 1 (cut after c2 recovered
	// u1, so that c2 did not take it too), does not.
	cut("u2")
	c3, h3 := f.coordinator(t, Options{Owner: "three", LeaseDuration: testLease, Codec: sealer(t, k2)})
	var got regState
	_, err := h3.Run(ctx, "u1", &got)
	require.NoError(t, err)
	assert.Equal(t, "u1@example.com", got.Email)

	before, _ := rawState(t, f, "u2")
	beforeInfo, err := c3.Get(ctx, "u2")
	require.NoError(t, err)
	var n int
	require.Eventually(t, func() bool {
		n, err = c3.Recover(ctx)
		return n == 1
	}, 10*time.Second, 10*time.Millisecond)
	require.ErrorIs(t, err, ErrUnsealable)
	assert.Contains(t, err.Error(), `key "k1", which the key ring does not have`)
	after, kid := rawState(t, f, "u2")
	assert.Equal(t, before, after, "the saga's state is untouched")
	assert.Equal(t, "k1", kid)
	afterInfo, err := c3.Get(ctx, "u2")
	require.NoError(t, err)
	assert.Equal(t, beforeInfo.Status, afterInfo.Status)
	assert.Equal(t, beforeInfo.Step, afterInfo.Step)
	_, err = h3.Run(ctx, "u2", &regState{})
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrCompensated)

	// Key 1 back in the ring: u2 finishes.
	assert.Equal(t, StatusSucceeded, recoverUntilFinal(t, c2, "u2").Status)
}

func TestSealer_RefusesWrongKeysAndMovedStates(t *testing.T) {
	s := sealer(t, key("k1", 1))
	sealedU1, err := s.Encode("u1", []byte(`{"email":"a@example.com"}`))
	require.NoError(t, err)
	assert.NotContains(t, string(sealedU1), "example.com")

	plain, err := s.Decode("u1", sealedU1)
	require.NoError(t, err)
	assert.JSONEq(t, `{"email":"a@example.com"}`, string(plain))

	_, err = s.Decode("u2", sealedU1)
	assert.ErrorIs(t, err, ErrUnsealable, "bound to its saga")
	_, err = sealer(t, key("k1", 9)).Decode("u1", sealedU1)
	assert.ErrorIs(t, err, ErrUnsealable, "another secret under the same id")
	_, err = sealer(t, key("k2", 1)).Decode("u1", sealedU1)
	assert.ErrorIs(t, err, ErrUnsealable, "a ring without k1")

	plain, err = s.Decode("u1", []byte(`{"email":"old@example.com"}`))
	require.NoError(t, err)
	assert.JSONEq(t, `{"email":"old@example.com"}`, string(plain), "a state stored before sealing opens as it is")

	for name, keys := range map[string][]Key{
		"no keys":      nil,
		"short secret": {{ID: "k", Secret: []byte("short")}},
		"empty id":     {{ID: "", Secret: make([]byte, 32)}},
		"duplicate id": {key("k", 1), key("k", 2)},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := NewSealer(keys...)
			assert.ErrorIs(t, err, ErrInvalid)
		})
	}
}
