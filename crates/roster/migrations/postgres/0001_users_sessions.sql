-- Users and server-side sessions (PostgreSQL).
-- Timestamps are Unix milliseconds (BIGINT) so types and queries match the SQLite set.

CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    username      TEXT    NOT NULL,
    -- NFKC + lowercase form of `username`, computed by the caller; the case-insensitive identity.
    -- COLLATE "C": byte (= code point) order, so a prefix search is an index range scan with a
    -- bound parameter, whatever the database's default collation is.
    username_key  TEXT COLLATE "C" NOT NULL,
    password_hash TEXT    NOT NULL,
    is_active     BOOLEAN NOT NULL DEFAULT TRUE,
    is_staff      BOOLEAN NOT NULL DEFAULT FALSE,
    date_joined   BIGINT  NOT NULL,
    last_login    BIGINT  NULL,
    last_seen     BIGINT  NULL,
    CONSTRAINT users_username_key_key UNIQUE (username_key)
);

-- The user list order: last_seen DESC NULLS LAST, then id.
CREATE INDEX users_last_seen_idx ON users (last_seen DESC NULLS LAST, id);

CREATE TABLE sessions (
    -- hex SHA-256 of the cookie value; the raw session id is never stored
    id_hash    TEXT   PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);
