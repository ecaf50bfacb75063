-- Users: the core, transactional data. The CHECK constraints repeat the
-- API's validation as a last line of defence for writes that bypass it.
CREATE TABLE users (
    id            uuid PRIMARY KEY,
    username      text NOT NULL CHECK (username ~ '^[a-z][a-z0-9_]{2,31}$'),
    email         text NOT NULL CHECK (char_length(email) BETWEEN 3 AND 254),
    password_hash text NOT NULL,
    language      text NOT NULL CHECK (language ~ '^[a-z]{2,3}$'),
    level         text NOT NULL CHECK (level IN ('A1', 'A2', 'B1', 'B2', 'C1', 'C2')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    version       bigint NOT NULL DEFAULT 1,
    CONSTRAINT users_username_key UNIQUE (username),
    CONSTRAINT users_email_key UNIQUE (email)
);

-- updated_at is the database's clock, like created_at, whoever writes.
CREATE FUNCTION users_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END $$;

CREATE TRIGGER users_touch BEFORE UPDATE ON users
    FOR EACH ROW EXECUTE FUNCTION users_touch();

---- create above / drop below ----

DROP TABLE users;
DROP FUNCTION users_touch();
