-- Keyset page: $1 the last id already seen (0 for the first page), $2 rows to fetch.
SELECT id, name, scopes, prefix, created_at, expires_at, revoked_at
  FROM api_keys
 WHERE id > $1
 ORDER BY id
 LIMIT $2;
