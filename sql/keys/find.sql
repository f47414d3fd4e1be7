-- The key whose hash is $1, for the request check (on a cache miss only).
SELECT key_hash, id, scopes, expires_at, revoked_at
  FROM api_keys
 WHERE key_hash = $1;
