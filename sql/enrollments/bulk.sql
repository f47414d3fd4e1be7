-- POST /enrollments in one round trip. $1 student ids, $2 course ids (parallel bigint[],
-- one pair per index), $3 actor. All or nothing: writes only when every student and every
-- course exists; pairs already there and repeats are no-ops.
--  * The students are locked in id order, so two bulk requests, and a bulk request and
--    the per-student writes (each locks its one student first), never deadlock.
--  * The courses are locked FOR KEY SHARE, as by the per-student POST.
-- Answers the unknown ids (each sorted), how many pairs it added and how many distinct
-- pairs were asked for; the enrollments it added are one events row.
WITH requested AS (
    SELECT DISTINCT student_id, course_id FROM unnest($1::bigint[], $2::bigint[]) AS r(student_id, course_id)
), locked_students AS (
    SELECT id FROM students
     WHERE id IN (SELECT student_id FROM requested)
     ORDER BY id
       FOR NO KEY UPDATE
), known_courses AS (
    SELECT id FROM courses
     WHERE id IN (SELECT course_id FROM requested)
     ORDER BY id
       FOR KEY SHARE
), unknown AS (
    SELECT (SELECT coalesce(array_agg(DISTINCT student_id ORDER BY student_id), '{}')
              FROM requested WHERE student_id NOT IN (SELECT id FROM locked_students)) AS student_ids,
           (SELECT coalesce(array_agg(DISTINCT course_id ORDER BY course_id), '{}')
              FROM requested WHERE course_id NOT IN (SELECT id FROM known_courses)) AS course_ids
), inserted AS (
    INSERT INTO student_courses (student_id, course_id)
    SELECT r.student_id, r.course_id
      FROM requested r, unknown u
     WHERE cardinality(u.student_ids) = 0 AND cardinality(u.course_ids) = 0
     ORDER BY r.student_id, r.course_id
        ON CONFLICT (student_id, course_id) DO NOTHING
    RETURNING student_id, course_id
), events AS (
    INSERT INTO events (type, actor, student_ids, course_ids)
    SELECT 'enrollment.created', $3::bigint,
           array_agg(student_id ORDER BY student_id, course_id), array_agg(course_id ORDER BY student_id, course_id)
      FROM inserted
    HAVING count(*) > 0
)
SELECT u.student_ids AS unknown_student_ids,
       u.course_ids AS unknown_course_ids,
       (SELECT count(*) FROM inserted) AS created,
       (SELECT count(*) FROM requested) AS requested
  FROM unknown u;
