-- POST /students/{id}/courses when no course it names has a capacity: the common case, as
-- cheap as before capacities existed (each CTE of assign.sql's admission costs about 5 % of
-- this statement even when it finds nothing: bench/RESULTS.md). $1 student id, $2 course
-- ids (bigint[]), $3 actor. Writes only when the student exists, every id names a course and
-- none has a capacity; repeats are no-ops. Each enrollment it adds records an
-- enrollment.created event; none added, none.
--  * `limited_course_ids`: the named courses this statement's snapshot shows with a capacity.
--    Then it locks no course and writes nothing, and the caller runs assign.sql, which admits
--    on their counters, and answers from it (here `unknown_course_ids` then names every id).
--  * Otherwise as assign.sql does for courses without a capacity: the student row first, then
--    the courses FOR KEY SHARE in id order. A course deleted meanwhile reads as unknown; one
--    given a capacity since the snapshot comes back from the lock with it (courses/lock.sql):
--    then nothing is written, `stale_course_ids` names it, and the caller runs this again.
-- It answers the columns of assign.sql (no course here has a capacity, so none is full).
-- `complete` is false when a requested course was enrolled by a concurrent request this
-- statement's snapshot cannot see; the caller then re-reads the list.
WITH student AS (
    SELECT id FROM students WHERE id = $1 FOR NO KEY UPDATE
), requested AS (
    SELECT DISTINCT unnest($2::bigint[]) AS course_id
), limited AS (
    SELECT coalesce(array_agg(id ORDER BY id), '{}') AS course_ids
      FROM courses
     WHERE id = ANY ($2::bigint[]) AND capacity IS NOT NULL
), known AS (
    -- Joined with `student`: no course is locked before the student, nor for a missing one.
    SELECT c.id, c.capacity
      FROM courses c
      JOIN requested r ON r.course_id = c.id
     CROSS JOIN student
     WHERE cardinality((SELECT course_ids FROM limited)) = 0
     ORDER BY c.id
       FOR KEY SHARE OF c
), stale AS (
    SELECT coalesce(array_agg(id ORDER BY id), '{}') AS course_ids FROM known WHERE capacity IS NOT NULL
), unknown AS (
    SELECT coalesce(array_agg(r.course_id ORDER BY r.course_id), '{}') AS course_ids
      FROM requested r
     WHERE r.course_id NOT IN (SELECT id FROM known)
), inserted AS (
    INSERT INTO student_courses (student_id, course_id)
    SELECT student.id, known.id
      FROM student, known, unknown, stale
     WHERE cardinality(unknown.course_ids) = 0
       AND cardinality(stale.course_ids) = 0
        ON CONFLICT (student_id, course_id) DO NOTHING
    RETURNING course_id, enrolled_at
), events AS (
    INSERT INTO events (type, actor, student_ids, course_ids)
    SELECT 'enrollment.created', $3::bigint, array_agg($1::bigint), array_agg(course_id ORDER BY course_id)
      FROM inserted
    HAVING count(*) > 0
), enrolled AS (
    SELECT course_id, enrolled_at FROM student_courses WHERE student_id = (SELECT id FROM student)
     UNION ALL
    SELECT course_id, enrolled_at FROM inserted
)
SELECT EXISTS (SELECT FROM student) AS student_found,
       (SELECT course_ids FROM limited) AS limited_course_ids,
       (SELECT course_ids FROM unknown) AS unknown_course_ids,
       '{}'::bigint[] AS full_course_ids,
       (SELECT course_ids FROM stale) AS stale_course_ids,
       NOT EXISTS (SELECT FROM known WHERE id NOT IN (SELECT course_id FROM enrolled)) AS complete,
       (SELECT coalesce(json_agg(json_build_object(
                   'id', c.id, 'code', c.code, 'title', c.title,
                   'enrolled_at', api_time(e.enrolled_at))
                   ORDER BY c.id), '[]')
          FROM enrolled e
          JOIN courses c ON c.id = e.course_id)::text AS courses;
