-- Remove up to $1 keys older than 24 hours, oldest first; answers how many it removed.
WITH doomed AS (
    SELECT caller, key FROM idempotency_keys
     WHERE created_at <= now() - interval '24 hours'
     ORDER BY created_at
     LIMIT $1
), removed AS (
    -- The age again: a key reused meanwhile has a fresh answer in the same row, and a
    -- DELETE that waited for that write re-checks only its own conditions.
    DELETE FROM idempotency_keys k
     USING doomed d
     WHERE k.caller = d.caller AND k.key = d.key
       AND k.created_at <= now() - interval '24 hours'
    RETURNING 1
)
SELECT count(*) FROM removed;
