-- First statement of a request with an Idempotency-Key: $1 caller, $2 key. True when this
-- transaction now holds the key (until it ends); false while another request holds it.
-- The lock is taken before the key's row is read (in the next statement, a new snapshot),
-- so a request that got the lock sees every answer committed before it.
SELECT pg_try_advisory_xact_lock(hashtextextended($1::bigint::text || ':' || $2, 0));
