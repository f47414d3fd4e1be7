-- $1 id. Sets revoked_at once (revoking again changes nothing); answers the key's hash,
-- so the revoking process can forget it at once, or no row for an unknown id.
WITH revoked AS (
    UPDATE api_keys SET revoked_at = now()
     WHERE id = $1 AND revoked_at IS NULL
)
SELECT key_hash FROM api_keys WHERE id = $1;
