-- The stored first answer to key $2 of caller $1, unless older than the 24 hours a key lives.
SELECT request, status, body, location
  FROM idempotency_keys
 WHERE caller = $1 AND key = $2 AND created_at > now() - interval '24 hours';
