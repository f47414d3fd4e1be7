-- The keys whose hashes are in $1 (bytea[]): each process re-reads the keys it has
-- cached every few seconds, so a revocation reaches every worker and replica.
SELECT key_hash, id, scopes, expires_at, revoked_at
  FROM api_keys
 WHERE key_hash = ANY ($1::bytea[]);
