-- POST /enrollments in one round trip. $1 student ids, $2 course ids (parallel bigint[],
-- one pair per index), $3 actor. All or nothing: writes only when every student and every
-- course exists and every course with a capacity has a seat for each new pair; pairs
-- already there and repeats are no-ops.
--  * The students are locked in id order, all of them before any course, so two bulk
--    requests, and a bulk request and the per-student writes (each locks its one student
--    first), never deadlock.
--  * The courses are locked as by the per-student POST (assign.sql): those this statement's
--    snapshot shows with a capacity FOR NO KEY UPDATE in id order, admitted on their
--    counters, then the others FOR KEY SHARE. When one of the others has been given a
--    capacity since the snapshot, nothing is written and `stale_course_ids` names it: the
--    caller runs the statement again.
-- Answers the unknown ids (each sorted), the full course ids (sorted), how many pairs it
-- added and how many distinct pairs were asked for; the enrollments it added are one
-- events row.
WITH requested AS (
    SELECT DISTINCT student_id, course_id FROM unnest($1::bigint[], $2::bigint[]) AS r(student_id, course_id)
), locked_students AS (
    SELECT id FROM students
     WHERE id IN (SELECT student_id FROM requested)
     ORDER BY id
       FOR NO KEY UPDATE
), limited AS (
    -- Joined with locked_students' count so that no course is locked before every student is.
    SELECT id, capacity, enrolled
      FROM courses
     WHERE id = ANY (ARRAY(SELECT c.id FROM courses c, (SELECT count(*) FROM locked_students) AS after_students
                            WHERE c.id IN (SELECT course_id FROM requested) AND c.capacity IS NOT NULL))
     ORDER BY id
       FOR NO KEY UPDATE
), unlimited AS (
    SELECT id, capacity
      FROM courses
     WHERE id = ANY (ARRAY(SELECT c.id FROM courses c, (SELECT count(*) FROM limited) AS after_limited
                            WHERE c.id IN (SELECT course_id FROM requested) AND c.capacity IS NULL))
     ORDER BY id
       FOR KEY SHARE
), known_courses AS (
    SELECT id FROM limited UNION ALL SELECT id FROM unlimited
), stale AS (
    SELECT coalesce(array_agg(id ORDER BY id), '{}') AS course_ids FROM unlimited WHERE capacity IS NOT NULL
), taken AS (
    -- The pairs on those courses that exist now: read fresh, under the students' locks.
    SELECT e.student_id, e.course_id
      FROM (SELECT array_agg(student_id) AS students, array_agg(course_id) AS courses
              FROM requested
             WHERE course_id IN (SELECT id FROM limited WHERE capacity IS NOT NULL)) AS p,
           enrollments_now(p.students, p.courses) AS e
     WHERE p.courses IS NOT NULL
), full_courses AS (
    SELECT coalesce(array_agg(l.id ORDER BY l.id), '{}') AS course_ids
      FROM limited l
      JOIN (SELECT r.course_id, count(*) AS seats
              FROM requested r
             WHERE r.course_id IN (SELECT id FROM limited)
               AND NOT EXISTS (SELECT FROM taken t
                                WHERE t.student_id = r.student_id AND t.course_id = r.course_id)
             GROUP BY r.course_id) AS new ON new.course_id = l.id
     WHERE l.enrolled + new.seats > l.capacity
), unknown AS (
    SELECT (SELECT coalesce(array_agg(DISTINCT student_id ORDER BY student_id), '{}')
              FROM requested WHERE student_id NOT IN (SELECT id FROM locked_students)) AS student_ids,
           (SELECT coalesce(array_agg(DISTINCT course_id ORDER BY course_id), '{}')
              FROM requested WHERE course_id NOT IN (SELECT id FROM known_courses)) AS course_ids
), inserted AS (
    INSERT INTO student_courses (student_id, course_id)
    SELECT r.student_id, r.course_id
      FROM requested r, unknown u, full_courses f, stale
     WHERE cardinality(u.student_ids) = 0 AND cardinality(u.course_ids) = 0
       AND cardinality(f.course_ids) = 0 AND cardinality(stale.course_ids) = 0
     ORDER BY r.student_id, r.course_id
        ON CONFLICT (student_id, course_id) DO NOTHING
    RETURNING student_id, course_id
), counted AS (
    -- From the row as `limited` locked it, with its capacity: see assign.sql.
    UPDATE courses c
       SET enrolled = l.enrolled + i.added, capacity = l.capacity
      FROM limited l
      JOIN (SELECT course_id, count(*) AS added FROM inserted GROUP BY course_id) AS i ON i.course_id = l.id
     WHERE c.id = l.id
       AND l.capacity IS NOT NULL
), events AS (
    INSERT INTO events (type, actor, student_ids, course_ids)
    SELECT 'enrollment.created', $3::bigint,
           array_agg(student_id ORDER BY student_id, course_id), array_agg(course_id ORDER BY student_id, course_id)
      FROM inserted
    HAVING count(*) > 0
)
SELECT u.student_ids AS unknown_student_ids,
       u.course_ids AS unknown_course_ids,
       f.course_ids AS full_course_ids,
       (SELECT course_ids FROM stale) AS stale_course_ids,
       (SELECT count(*) FROM inserted) AS created,
       (SELECT count(*) FROM requested) AS requested
  FROM unknown u, full_courses f;
