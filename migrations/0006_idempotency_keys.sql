-- depends: 0005_course_capacity
-- The first answer to each Idempotency-Key, per caller, so a retry gets it again instead of
-- a second write. A row is written in the same transaction as the write it answers for.
CREATE TABLE idempotency_keys (
    -- The caller's API key id (0 with AUTH=off): keys of different callers never collide.
    caller      bigint      NOT NULL,
    key         text        NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    -- A hash of the method, the path and the request body, to tell a retry from a reuse.
    request     bytea       NOT NULL,
    status      smallint    NOT NULL,
    body        bytea       NOT NULL,
    location    text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (caller, key)
);
-- Expiry removes the oldest rows first.
CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);
