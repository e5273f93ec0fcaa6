-- The number of accounts, kept by the database itself so that every process (each node, the
-- CLI) reads an exact count in O(1): `count_users` no longer scans the table.
CREATE TABLE user_count (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    n  BIGINT   NOT NULL
);
INSERT INTO user_count (id, n) SELECT 1, COUNT(*) FROM users;

CREATE FUNCTION users_count_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE user_count SET n = n + 1 WHERE id = 1;
    ELSE
        UPDATE user_count SET n = n - 1 WHERE id = 1;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER users_count_change AFTER INSERT OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION users_count_change();
