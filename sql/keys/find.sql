-- The keys whose hashes are in $1 (bytea[]): a key a request brings (once), and the keys each
-- process has cached, re-read every few seconds so a revocation reaches every worker and replica.
SELECT key_hash, id, scopes, expires_at, revoked_at
  FROM api_keys
 WHERE key_hash = ANY ($1::bytea[]);
