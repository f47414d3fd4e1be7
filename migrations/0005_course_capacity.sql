-- depends: 0004_events
-- Course capacity (API.md "Capacity"). `capacity` is the most students a course takes,
-- NULL for no limit. `enrolled` counts a course's enrollments, kept only while it has a
-- capacity, and NULL otherwise: an unlimited course is never written (nor locked against
-- other writers) by an enrollment, and its `enrolled` is counted from student_courses when
-- asked. A course with a capacity is admitted against this counter, on its locked row: in
-- READ COMMITTED a statement that waited for that lock re-reads the row, but a count(*) in
-- the same statement would still miss the enrollment the previous holder just committed.
-- Every statement that adds or removes enrollments keeps the counter in that statement.
ALTER TABLE courses
    ADD COLUMN capacity integer CONSTRAINT courses_capacity_check CHECK (capacity BETWEEN 1 AND 100000),
    ADD COLUMN enrolled integer,
    ADD CONSTRAINT courses_counted_while_limited CHECK ((capacity IS NULL) = (enrolled IS NULL)),
    -- The last word on overbooking, whatever a statement gets wrong.
    ADD CONSTRAINT courses_within_capacity CHECK (enrolled BETWEEN 0 AND capacity);

-- Every course is unlimited now, so there is no counter to fill: PATCHing a capacity counts
-- the course's enrollments as it sets it (sql/courses/set_capacity.sql).

-- The Course of the API as event data, now with its capacity and enrolled count.
DROP FUNCTION course_json(bigint, text, text, timestamptz);
CREATE FUNCTION course_json(id bigint, code text, title text, capacity integer, enrolled bigint,
                            created_at timestamptz) RETURNS json
LANGUAGE sql STABLE PARALLEL SAFE
RETURN json_build_object('id', id, 'code', code, 'title', title, 'capacity', capacity, 'enrolled', enrolled,
                         'created_at', api_time(created_at));

-- Which of the pairs (pair_students[i], pair_courses[i]) are enrollments now. VOLATILE on
-- purpose: in READ COMMITTED each call reads with a snapshot of its own, taken when it runs,
-- not the calling statement's. A one-statement enrollment write calls it once it holds its
-- students' locks, so it counts the new seats it takes exactly, even when another write of
-- the same student committed while it waited for the lock (its statement snapshot would
-- miss that enrollment, or still show one that write removed).
CREATE FUNCTION enrollments_now(pair_students bigint[], pair_courses bigint[])
RETURNS TABLE (student_id bigint, course_id bigint)
LANGUAGE sql VOLATILE
AS $$
    SELECT sc.student_id, sc.course_id
      FROM unnest(pair_students, pair_courses) AS p(student_id, course_id)
      JOIN student_courses sc ON sc.student_id = p.student_id AND sc.course_id = p.course_id
$$;
