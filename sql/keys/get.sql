SELECT id, name, scopes, prefix, created_at, expires_at, revoked_at
  FROM api_keys
 WHERE id = $1;
