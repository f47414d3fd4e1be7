DROP FUNCTION enrollments_now(bigint[], bigint[]);
DROP FUNCTION course_json(bigint, text, text, integer, bigint, timestamptz);
CREATE FUNCTION course_json(id bigint, code text, title text, created_at timestamptz) RETURNS json
LANGUAGE sql STABLE PARALLEL SAFE
RETURN json_build_object('id', id, 'code', code, 'title', title, 'created_at', api_time(created_at));
ALTER TABLE courses
    DROP CONSTRAINT courses_within_capacity,
    DROP CONSTRAINT courses_counted_while_limited,
    DROP COLUMN enrolled,
    DROP COLUMN capacity;
