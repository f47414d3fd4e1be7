-- $1 name, $2 prefix, $3 key hash (SHA-256), $4 scopes (text[]), $5 expires_at or NULL.
INSERT INTO api_keys (name, prefix, key_hash, scopes, expires_at)
VALUES ($1, $2, $3, $4, $5)
RETURNING id, name, scopes, prefix, created_at, expires_at, revoked_at;
