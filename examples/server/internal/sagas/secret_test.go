package sagas_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"github.com/polystore/polystore/coord"
	"github.com/polystore/polystore/examples/server/internal/chat"
	"github.com/polystore/polystore/examples/server/internal/mongostore"
	"github.com/polystore/polystore/examples/server/internal/pgstore"
	"github.com/polystore/polystore/examples/server/internal/redisstore"
	"github.com/polystore/polystore/examples/server/internal/sagas"
	"github.com/polystore/polystore/internal/servicetest"
	"github.com/polystore/polystore/pgrepo"
)

// cutBeforeInsert is the user store, except that while cut is set its
// CreateUserIn fails once as an unavailable store would, then waits for its
// context to end without inserting: the process that ran the registration
// is gone before the insert committed. The failed first try is what puts
// the saga in the log before the insert: coord inserts the record in the
// first step's transaction, and a try that fails rolls it back, so the
// record is then inserted on its own before the next try.
type cutBeforeInsert struct {
	*pgstore.UserRepository
	cut     bool
	failed  bool
	reached chan struct{}
}

func (c *cutBeforeInsert) CreateUserIn(ctx context.Context, db pgrepo.DB, u *chat.User) error {
	if c.cut && !c.failed {
		c.failed = true
		return chat.Errorf(chat.CodeUnavailable, "the user store is down (test)")
	}
	if c.cut {
		close(c.reached)
		<-ctx.Done()
		return ctx.Err()
	}
	return c.UserRepository.CreateUserIn(ctx, db, u)
}

// sagaLog is every coord_saga and coord_history row as text, every column.
func sagaLog(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	var s string
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT
		coalesce((SELECT string_agg(row_to_json(s)::text, E'\n') FROM coord_saga s), '') || E'\n' ||
		coalesce((SELECT string_agg(row_to_json(h)::text, E'\n') FROM coord_history h), '')`).Scan(&s))
	return s
}

// assertNoByteOfHash checks that no 8-byte piece of hash's salt and
// checksum (after the "$2a$04$" that every hash of the cost shares) is in
// log, nor the hash's base64.
func assertNoByteOfHash(t *testing.T, log, hash string) {
	t.Helper()
	require.Len(t, hash, 60, "a bcrypt hash")
	secret := hash[7:]
	for i := 0; i+8 <= len(secret); i++ {
		if !assert.NotContains(t, log, secret[i:i+8], "a piece of the password hash is in the saga log") {
			return
		}
	}
	assert.NotContains(t, log, strings.TrimRight(base64.StdEncoding.EncodeToString([]byte(hash)), "="))
}

func TestRegister_ThePasswordHashIsInNoSagaLogRow(t *testing.T) {
	key := coord.Key{ID: "k1", Secret: bytes.Repeat([]byte{7}, 32)}
	sealer, err := coord.NewSealer(key)
	require.NoError(t, err)

	for _, tt := range []struct {
		name  string
		codec coord.StateCodec // nil: unsealed
		// recovered: what a recovery in another process makes of a
		// registration cut before its insert.
		recovered coord.Status
	}{
		{"sealed", sealer, coord.StatusSucceeded},
		{"unsealed", nil, coord.StatusCompensated},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			pool := servicetest.Postgres(t)
			rdb, prefix := servicetest.Redis(t)
			require.NoError(t, pgstore.Migrate(ctx, pool))
			repo, err := pgstore.NewUserRepository(pool)
			require.NoError(t, err)
			conversations, err := mongostore.NewConversationRepository(servicetest.Mongo(t))
			require.NoError(t, err)
			cache, err := redisstore.NewProfileCache(rdb, prefix, redisstore.ProfileCacheOptions{})
			require.NoError(t, err)
			newSagas := func(users sagas.UserStore) (*coord.Coordinator, *sagas.Sagas) {
				c, err := coord.New(ctx, pool, coord.Options{Codec: tt.codec})
				require.NoError(t, err)
				t.Cleanup(func() { _ = c.Close() })
				s, err := sagas.New(c, users, conversations, cache, nil, nil, nil, sagas.Options{Sealed: tt.codec != nil})
				require.NoError(t, err)
				return c, s
			}
			hash := func(password string) string {
				h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
				require.NoError(t, err)
				return string(h)
			}

			// A registration that runs to the end.
			users := &cutBeforeInsert{UserRepository: repo}
			c1, s := newSagas(users)
			alice := &chat.User{ID: uuid.New(), Username: "alice", Email: "alice@example.org", PasswordHash: hash("correct horse"), Language: "fr", Level: "A1"}
			got, _, err := s.Register(ctx, alice)
			require.NoError(t, err)
			assert.Equal(t, alice.PasswordHash, got.PasswordHash, "Register returns the user as stored")
			stored, err := repo.FindUser(ctx, alice.ID)
			require.NoError(t, err)
			require.Equal(t, alice.PasswordHash, stored.PasswordHash, "the row holds the hash")
			assertNoByteOfHash(t, sagaLog(t, pool), alice.PasswordHash)
			if tt.codec != nil {
				// Sealed, the state after the pivot no longer holds the
				// hash even for whoever has the key.
				var state []byte
				require.NoError(t, pool.QueryRow(ctx, "SELECT state::text FROM coord_saga WHERE id = $1", "register-user/"+alice.ID.String()).Scan(&state))
				plain, err := sealer.Decode("register-user/"+alice.ID.String(), state)
				require.NoError(t, err)
				assert.NotContains(t, string(plain), "password_hash")
				assert.Contains(t, string(plain), `"username":"alice"`)
			}

			// A registration cut before its insert committed: its process
			// is gone (the context ends while the step waits).
			users.cut, users.reached = true, make(chan struct{})
			bob := &chat.User{ID: uuid.New(), Username: "bob", Email: "bob@example.org", PasswordHash: hash("battery staple"), Language: "de", Level: "B2"}
			runCtx, cancel := context.WithCancel(ctx)
			go func() { <-users.reached; cancel() }()
			_, _, err = s.Register(runCtx, bob)
			var pending *chat.Pending
			require.ErrorAs(t, err, &pending, "logged, left to recovery")
			bobSaga := "register-user/" + bob.ID.String()
			info, err := c1.Get(ctx, bobSaga)
			require.NoError(t, err)
			require.Equal(t, coord.StatusRunning, info.Status)
			require.Equal(t, 0, info.Step, "the insert has not committed")
			assertNoByteOfHash(t, sagaLog(t, pool), bob.PasswordHash)

			// Another process recovers it.
			c2, _ := newSagas(repo)
			n, err := c2.Recover(ctx)
			require.NoError(t, err)
			require.Equal(t, 1, n)
			info, err = c2.Get(ctx, bobSaga)
			require.NoError(t, err)
			assert.Equal(t, tt.recovered, info.Status)
			row, err := repo.FindUser(ctx, bob.ID)
			if tt.recovered == coord.StatusSucceeded {
				require.NoError(t, err, "the sealed state let recovery redo the insert")
				assert.Equal(t, bob.PasswordHash, row.PasswordHash)
				err = bcrypt.CompareHashAndPassword([]byte(row.PasswordHash), []byte("battery staple"))
				assert.NoError(t, err)
			} else {
				assert.Equal(t, chat.CodeNotFound, chat.ErrorCode(err), "no hash, no insert: undone")
			}
			assertNoByteOfHash(t, sagaLog(t, pool), bob.PasswordHash)
		})
	}
}

// failingUndo is the user store whose DeleteUserIn always fails: a
// registration whose pivot fails cannot be undone.
type failingUndo struct{ *pgstore.UserRepository }

func (failingUndo) DeleteUserIn(context.Context, pgrepo.DB, uuid.UUID) error {
	return chat.Errorf(chat.CodeInternal, "deletes refused (test)")
}

// downConversations fails every conversation write.
type downConversations struct{ chat.ConversationStore }

func (downConversations) CreateConversation(context.Context, *chat.Conversation) error {
	return chat.Errorf(chat.CodeInternal, "MongoDB down (test)")
}

func (downConversations) DeleteConversation(context.Context, string) error { return nil }

func TestOperation_AFailedRegistrationIsFailedThenResolvedOnceAnOperatorResolvesIt(t *testing.T) {
	ctx := context.Background()
	pool := servicetest.Postgres(t)
	rdb, prefix := servicetest.Redis(t)
	require.NoError(t, pgstore.Migrate(ctx, pool))
	repo, err := pgstore.NewUserRepository(pool)
	require.NoError(t, err)
	conversations, err := mongostore.NewConversationRepository(servicetest.Mongo(t))
	require.NoError(t, err)
	cache, err := redisstore.NewProfileCache(rdb, prefix, redisstore.ProfileCacheOptions{})
	require.NoError(t, err)
	c, err := coord.New(ctx, pool, coord.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	s, err := sagas.New(c, failingUndo{repo}, downConversations{conversations}, cache, nil, nil, nil, sagas.Options{})
	require.NoError(t, err)

	u := &chat.User{ID: uuid.New(), Username: "carol", Email: "carol@example.org", PasswordHash: "x", Language: "es", Level: "A2"}
	_, _, err = s.Register(ctx, u)
	require.ErrorIs(t, err, coord.ErrFailed)
	id := "register-user/" + u.ID.String()
	op, err := s.Operation(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, chat.OperationFailed, op.Status)

	_, err = c.Resolve(ctx, id, "ops", "deleted the row by hand")
	require.NoError(t, err)
	op, err = s.Operation(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, chat.OperationResolved, op.Status, "not pending: nothing will finish it")
	assert.Equal(t, "ended by an operator by hand", op.Message)
}
