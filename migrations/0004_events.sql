-- depends: 0003_api_keys
-- The change feed: every write of students, courses and enrollments records its events
-- here, in the same statement or transaction as the change. Append-only; old events are
-- removed from the low end only, and `events_removed` remembers how far (for the 410).
--
-- One row holds one statement's events of one type: a POST that enrolls a student in
-- three courses writes one row, not three (measured: per-enrollment rows cost the POST
-- a fifth of its throughput). A row's events have the ids id, id + 1, ... (one per
-- element of its arrays, or just id), so ids step by 16384, the most one row may hold.
CREATE TABLE events (
    id    bigint      GENERATED ALWAYS AS IDENTITY (INCREMENT BY 16384) PRIMARY KEY,
    type  text        NOT NULL CHECK (type IN ('student.created', 'student.updated', 'student.deleted',
                                               'course.created', 'course.updated', 'course.deleted',
                                               'enrollment.created', 'enrollment.deleted')),
    at    timestamptz NOT NULL DEFAULT now(),
    -- The API key that made the change (NULL with AUTH=off). No foreign key: keys are never
    -- deleted, and the check would cost every write.
    actor bigint,
    -- Enrollment events: the pairs (student_ids[i], course_ids[i]), one event each; their
    -- enrolled_at is `at` (both are the transaction's now()), and the feed builds their JSON,
    -- so the hottest write builds none. Every other row is one event, its resource as the
    -- statement built it (json, not jsonb: served as stored).
    student_ids bigint[],
    course_ids  bigint[],
    data  json,
    -- How many events the row holds (the feed reads it before it expands any row).
    n     integer     GENERATED ALWAYS AS (coalesce(cardinality(course_ids), 1)) STORED,
    CHECK (CASE WHEN type LIKE 'enrollment.%'
                THEN course_ids IS NOT NULL AND student_ids IS NOT NULL
                     AND cardinality(course_ids) BETWEEN 1 AND 16384
                     AND cardinality(student_ids) = cardinality(course_ids) AND data IS NULL
                ELSE data IS NOT NULL AND course_ids IS NULL AND student_ids IS NULL END)
);

CREATE TABLE events_removed (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    -- Every event with an id up to this one has been removed by retention.
    through  bigint  NOT NULL DEFAULT 0
);
INSERT INTO events_removed DEFAULT VALUES;
-- Its one row, known to the planner (autovacuum never analyzes a table this small, and the
-- default guess of 2,200 rows made the feed's plans look costly enough for JIT).
ANALYZE events_removed;

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
