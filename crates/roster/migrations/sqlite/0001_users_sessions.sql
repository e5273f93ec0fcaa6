-- Users and server-side sessions (SQLite).
-- Timestamps are Unix milliseconds (BIGINT) so types and queries match the PostgreSQL set.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT    NOT NULL,
    -- NFKC + lowercase form of `username`, computed by the caller; the case-insensitive identity.
    -- SQLite compares TEXT with BINARY (memcmp of UTF-8 = code-point order), so prefix ranges work.
    username_key  TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    is_active     BOOLEAN NOT NULL DEFAULT TRUE,
    is_staff      BOOLEAN NOT NULL DEFAULT FALSE,
    date_joined   BIGINT  NOT NULL,
    last_login    BIGINT  NULL,
    last_seen     BIGINT  NULL,
    CONSTRAINT users_username_key_key UNIQUE (username_key)
);

-- The user list order: last_seen DESC (SQLite sorts NULLs first ascending, so last descending), then id.
CREATE INDEX users_last_seen_idx ON users (last_seen DESC, id);

CREATE TABLE sessions (
    -- hex SHA-256 of the cookie value; the raw session id is never stored
    id_hash    TEXT   NOT NULL PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);
