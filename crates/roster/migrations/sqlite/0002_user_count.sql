-- The number of accounts, kept by the database itself so that every process (each node, the
-- CLI) reads an exact count in O(1): `count_users` no longer scans the table.
CREATE TABLE user_count (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n  BIGINT  NOT NULL
);
INSERT INTO user_count (id, n) SELECT 1, COUNT(*) FROM users;

CREATE TRIGGER users_count_insert AFTER INSERT ON users
BEGIN
    UPDATE user_count SET n = n + 1 WHERE id = 1;
END;

CREATE TRIGGER users_count_delete AFTER DELETE ON users
BEGIN
    UPDATE user_count SET n = n - 1 WHERE id = 1;
END;
