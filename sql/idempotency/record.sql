-- Keep the first answer to key $2 of caller $1: $3 request hash, $4 status, $5 body,
-- $6 Location (or NULL). An expired row of the same key is replaced.
INSERT INTO idempotency_keys (caller, key, request, status, body, location)
VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (caller, key) DO UPDATE
   SET request = excluded.request, status = excluded.status, body = excluded.body,
       location = excluded.location, created_at = excluded.created_at
 WHERE idempotency_keys.created_at <= now() - interval '24 hours';
