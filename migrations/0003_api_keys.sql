-- depends: 0002_student_courses
-- API keys. Only a SHA-256 of each key is kept: keys are 256 random bits, so a fast
-- hash is as safe as a slow one and costs the hot path nothing (the lookup is by hash).
CREATE TABLE api_keys (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- The key's first 12 characters, to recognise it in a list; not enough to guess it.
    prefix     text        NOT NULL CHECK (length(prefix) = 12),
    key_hash   bytea       NOT NULL CHECK (length(key_hash) = 32),
    scopes     text[]      NOT NULL CHECK (cardinality(scopes) > 0
                                           AND scopes <@ ARRAY['read', 'write', 'admin']),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    revoked_at timestamptz,
    CONSTRAINT api_keys_key_hash_key UNIQUE (key_hash)
);
