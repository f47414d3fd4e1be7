-- depends: 0003_api_keys
-- The change feed: every write of students, courses and enrollments records its events
-- here, in the same statement or transaction as the change. Append-only; old events are
-- removed from the low end only, and `events_removed` remembers how far (for the 410).
CREATE TABLE events (
    id    bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type  text        NOT NULL CHECK (type IN ('student.created', 'student.updated', 'student.deleted',
                                               'course.created', 'course.updated', 'course.deleted',
                                               'enrollment.created', 'enrollment.deleted')),
    at    timestamptz NOT NULL DEFAULT now(),
    -- The API key that made the change (NULL with AUTH=off). No foreign key: keys are never
    -- deleted, and the check would cost every write.
    actor bigint,
    -- An enrollment event is its two ids (its enrolled_at is `at`: both are the transaction's
    -- now()), and the feed builds its JSON: the hottest write builds none. Every other event
    -- keeps the resource as the statement built it (json, not jsonb: served as stored).
    student_id bigint,
    course_id  bigint,
    data  json,
    CHECK (CASE WHEN type LIKE 'enrollment.%'
                THEN student_id IS NOT NULL AND course_id IS NOT NULL AND data IS NULL
                ELSE data IS NOT NULL END)
);

CREATE TABLE events_removed (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    -- Every event with an id up to this one has been removed by retention.
    through  bigint  NOT NULL DEFAULT 0
);
INSERT INTO events_removed DEFAULT VALUES;

-- RFC 3339 in UTC with microseconds, as the API writes every timestamp.
CREATE FUNCTION api_time(t timestamptz) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');

-- The Student and Course of the API, as event data.
CREATE FUNCTION student_json(id bigint, name text, email text, created_at timestamptz) RETURNS json
LANGUAGE sql STABLE PARALLEL SAFE
RETURN json_build_object('id', id, 'name', name, 'email', email, 'created_at', api_time(created_at));

CREATE FUNCTION course_json(id bigint, code text, title text, created_at timestamptz) RETURNS json
LANGUAGE sql STABLE PARALLEL SAFE
RETURN json_build_object('id', id, 'code', code, 'title', title, 'created_at', api_time(created_at));
