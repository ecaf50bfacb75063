package pgstore

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/polystore/polystore/examples/server/internal/chat"
	"github.com/polystore/polystore/pgrepo"
)

// userRow is a users row. It is the adapter's own type, so the domain's
// User carries no storage tags.
type userRow struct {
	ID           uuid.UUID `db:"id,pk"`
	Username     string    `db:"username"`
	Email        string    `db:"email"`
	PasswordHash string    `db:"password_hash"`
	Language     string    `db:"language"`
	Level        string    `db:"level"`
	CreatedAt    time.Time `db:"created_at,generated"`
	UpdatedAt    time.Time `db:"updated_at,readonly"` // set by the users_touch trigger
	Version      int64     `db:"version,version"`
}

func (r *userRow) user() *chat.User {
	return &chat.User{
		ID: r.ID, Username: r.Username, Email: r.Email, PasswordHash: r.PasswordHash,
		Language: r.Language, Level: r.Level,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, Version: r.Version,
	}
}

// UserRepository is the chat.UserStore on PostgreSQL.
type UserRepository struct {
	pool  *pgxpool.Pool
	users *pgrepo.Repository[userRow, uuid.UUID]
}

var _ chat.UserStore = (*UserRepository)(nil)

// NewUserRepository returns the users repository on pool, whose database
// Migrate has brought up to date. Its spans and metrics go to the global
// OpenTelemetry providers.
func NewUserRepository(pool *pgxpool.Pool) (*UserRepository, error) {
	return NewUserRepositoryWithOptions(pool, pgrepo.Options{})
}

// NewUserRepositoryWithOptions is NewUserRepository with pgrepo's options:
// the tracer and meter providers of its spans (pgrepo.<Method> users) and
// metrics.
func NewUserRepositoryWithOptions(pool *pgxpool.Pool, opts pgrepo.Options) (*UserRepository, error) {
	users, err := pgrepo.NewWithOptions[userRow, uuid.UUID]("users", opts)
	if err != nil {
		return nil, err
	}
	return &UserRepository{pool: pool, users: users}, nil
}

// CreateUser inserts u with its ID and fills its timestamps and version.
// CodeConflict names the taken field.
func (s *UserRepository) CreateUser(ctx context.Context, u *chat.User) error {
	return s.CreateUserIn(ctx, s.pool, u)
}

// CreateUserIn is CreateUser on db: the caller's transaction, such as the
// coord.Tx in which a saga step's write and its log record commit together.
func (s *UserRepository) CreateUserIn(ctx context.Context, db pgrepo.DB, u *chat.User) error {
	row := userRow{
		ID: u.ID, Username: u.Username, Email: u.Email, PasswordHash: u.PasswordHash,
		Language: u.Language, Level: u.Level,
	}
	if err := s.users.Insert(ctx, db, &row); err != nil {
		return translate(err)
	}
	*u = *row.user()
	return nil
}

// FindUser returns the user with id. CodeNotFound.
func (s *UserRepository) FindUser(ctx context.Context, id uuid.UUID) (*chat.User, error) {
	row, err := s.users.Get(ctx, s.pool, id)
	if err != nil {
		return nil, translate(err)
	}
	return row.user(), nil
}

// UpdateUser applies p if the row's current version meets cond, in a
// transaction of its own (see UpdateUserIn).
func (s *UserRepository) UpdateUser(ctx context.Context, id uuid.UUID, cond chat.Precondition, p chat.UserPatch) (*chat.User, error) {
	var u *chat.User
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		u, err = s.UpdateUserIn(ctx, tx, id, cond, p)
		return err
	})
	if err != nil && chat.ErrorCode(err) == chat.CodeInternal {
		return nil, translate(err) // BEGIN or COMMIT failed
	}
	return u, err
}

// UpdateUserIn applies p if the row's current version meets cond, on db:
// the caller's transaction, such as a saga step's. It locks the row first
// (SELECT ... FOR UPDATE), so that cond is checked against the version the
// write replaces: two updates with the same If-Match cannot both pass (the
// second sees the first's version and fails with CodePreconditionFailed),
// and If-Match: * never fails because of a concurrent writer. The write
// checks the version again (WHERE version = $n) all the same. CodeNotFound
// comes before the condition is looked at.
func (s *UserRepository) UpdateUserIn(ctx context.Context, db pgrepo.DB, id uuid.UUID, cond chat.Precondition, p chat.UserPatch) (*chat.User, error) {
	if _, err := db.Exec(ctx, "SELECT 1 FROM users WHERE id = $1 FOR UPDATE", id); err != nil {
		return nil, translate(err)
	}
	row, err := s.users.Get(ctx, db, id)
	if err != nil {
		return nil, translate(err)
	}
	if !cond.Allows(row.Version) {
		if !cond.Any && len(cond.Versions) == 1 {
			return nil, chat.Errorf(chat.CodePreconditionFailed, "user was modified: version is %d, not %d", row.Version, cond.Versions[0])
		}
		return nil, chat.Errorf(chat.CodePreconditionFailed, "user is at version %d, which If-Match does not name", row.Version)
	}
	if p.Email != nil {
		row.Email = *p.Email
	}
	if p.Language != nil {
		row.Language = *p.Language
	}
	if p.Level != nil {
		row.Level = *p.Level
	}
	if err := s.users.Update(ctx, db, &row); err != nil {
		return nil, translate(err)
	}
	return row.user(), nil
}

// DeleteUser removes the user. CodeNotFound.
func (s *UserRepository) DeleteUser(ctx context.Context, id uuid.UUID) error {
	return s.DeleteUserIn(ctx, s.pool, id)
}

// DeleteUserIn is DeleteUser on db, the caller's transaction.
func (s *UserRepository) DeleteUserIn(ctx context.Context, db pgrepo.DB, id uuid.UUID) error {
	return translate(s.users.Delete(ctx, db, id))
}

// FindLogin returns the id and password hash of the user with username, or
// with email when username is "": the login's one read. CodeNotFound.
func (s *UserRepository) FindLogin(ctx context.Context, username, email string) (uuid.UUID, string, error) {
	q, arg := "SELECT id, password_hash FROM users WHERE username = $1", username
	if username == "" {
		q, arg = "SELECT id, password_hash FROM users WHERE email = $1", email
	}
	var id uuid.UUID
	var hash string
	err := s.pool.QueryRow(ctx, q, arg).Scan(&id, &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return uuid.UUID{}, "", chat.Wrap(chat.CodeNotFound, err, "user not found")
	}
	if err != nil {
		return uuid.UUID{}, "", chat.Wrap(chat.CodeUnavailable, err, "PostgreSQL is unavailable")
	}
	return id, hash, nil
}

// Usernames returns the usernames of those of ids that exist, in one query.
func (s *UserRepository) Usernames(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]string, error) {
	out := make(map[uuid.UUID]string, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, "SELECT id, username FROM users WHERE id = ANY($1)", ids)
	if err != nil {
		return nil, chat.Wrap(chat.CodeUnavailable, err, "PostgreSQL is unavailable")
	}
	var id uuid.UUID
	var name string
	_, err = pgx.ForEachRow(rows, []any{&id, &name}, func() error {
		out[id] = name
		return nil
	})
	if err != nil {
		return nil, chat.Wrap(chat.CodeUnavailable, err, "PostgreSQL is unavailable")
	}
	return out, nil
}

// Ping checks that PostgreSQL answers.
func (s *UserRepository) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// translate maps pgrepo's sentinels to application errors, keeping them as
// the cause; anything else is a store failure.
func translate(err error) error {
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, pgrepo.ErrNotFound):
		return chat.Wrap(chat.CodeNotFound, err, "user not found")
	case errors.Is(err, pgrepo.ErrConflict):
		return chat.Wrap(chat.CodePreconditionFailed, err, "user was modified: read it again for its new version")
	case errors.Is(err, pgrepo.ErrDuplicate) && errors.As(err, &pgErr):
		switch pgErr.ConstraintName {
		case "users_username_key":
			return chat.Wrap(chat.CodeConflict, err, "username: already taken")
		case "users_email_key":
			return chat.Wrap(chat.CodeConflict, err, "email: already registered")
		}
		return chat.Wrap(chat.CodeConflict, err, "user already exists")
	case errors.Is(err, pgrepo.ErrCheck):
		// The API validates first: reaching a CHECK is a bug, not bad input.
		return chat.Wrap(chat.CodeInternal, err, "user violates a check constraint")
	}
	return chat.Wrap(chat.CodeUnavailable, err, "PostgreSQL is unavailable")
}
