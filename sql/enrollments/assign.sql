-- POST /students/{id}/courses in one round trip. $1 student id, $2 course ids (bigint[]),
-- $3 actor. Writes only when the student exists and every id names a course; repeats are
-- no-ops. Each enrollment it adds records an enrollment.created event; none added, none.
--  * The student row is locked first: enrollment writes of one student never interleave
--    (no deadlocks), and a student deleted meanwhile reads as missing.
--  * The courses are locked FOR KEY SHARE: a course deleted meanwhile reads as unknown,
--    and it cannot be deleted until this enrollment is committed.
-- `complete` is false when a requested course was enrolled by a concurrent request this
-- statement's snapshot cannot see; the caller then re-reads the list.
WITH student AS (
    SELECT id FROM students WHERE id = $1 FOR NO KEY UPDATE
), requested AS (
    SELECT DISTINCT unnest($2::bigint[]) AS course_id
), known AS (
    SELECT c.id FROM courses c JOIN requested r ON r.course_id = c.id FOR KEY SHARE OF c
), unknown AS (
    SELECT coalesce(array_agg(r.course_id ORDER BY r.course_id), '{}') AS course_ids
      FROM requested r
     WHERE r.course_id NOT IN (SELECT id FROM known)
), inserted AS (
    INSERT INTO student_courses (student_id, course_id)
    SELECT student.id, known.id
      FROM student, known, unknown
     WHERE cardinality(unknown.course_ids) = 0
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
       (SELECT course_ids FROM unknown) AS unknown_course_ids,
       NOT EXISTS (SELECT FROM known WHERE id NOT IN (SELECT course_id FROM enrolled)) AS complete,
       (SELECT coalesce(json_agg(json_build_object(
                   'id', c.id, 'code', c.code, 'title', c.title,
                   'enrolled_at', api_time(e.enrolled_at))
                   ORDER BY c.id), '[]')
          FROM enrolled e
          JOIN courses c ON c.id = e.course_id)::text AS courses;
