-- PUT /students/{id}/courses, run after lock_student in the same transaction (so this
-- statement's snapshot holds every enrollment of the student). $1 student id, $2 course ids
-- (bigint[], may be empty), $3 actor. Replaces the student's set only when every id names a
-- course and every course with a capacity it adds has a seat, recording enrollment.deleted
-- for each course dropped and enrollment.created for each added; answers the unknown ids,
-- the full ones, and the new list as JSON.
--  * Every course it may touch (asked for, or taken now) is locked as assign.sql locks
--    them: those its snapshot shows with a capacity FOR NO KEY UPDATE in id order, then the
--    others FOR KEY SHARE; the counters move by what this adds and drops. When one of the
--    others has been given a capacity since the snapshot, nothing is written and
--    `stale_course_ids` names it: the caller runs the whole transaction again.
WITH requested AS (
    SELECT DISTINCT unnest($2::bigint[]) AS course_id
), current AS (
    SELECT course_id FROM student_courses WHERE student_id = $1
), touching AS (
    SELECT course_id FROM requested UNION SELECT course_id FROM current
), limited AS (
    SELECT id, capacity, enrolled
      FROM courses
     WHERE id = ANY (ARRAY(SELECT c.id FROM courses c
                            WHERE c.id IN (SELECT course_id FROM touching) AND c.capacity IS NOT NULL))
     ORDER BY id
       FOR NO KEY UPDATE
), unlimited AS (
    SELECT id, capacity
      FROM courses
     WHERE id = ANY (ARRAY(SELECT c.id FROM courses c, (SELECT count(*) FROM limited) AS after_limited
                            WHERE c.id IN (SELECT course_id FROM touching) AND c.capacity IS NULL))
     ORDER BY id
       FOR KEY SHARE
), known AS (
    SELECT id FROM (SELECT id FROM limited UNION ALL SELECT id FROM unlimited) AS touched
     WHERE id IN (SELECT course_id FROM requested)
), stale AS (
    SELECT coalesce(array_agg(id ORDER BY id), '{}') AS course_ids FROM unlimited WHERE capacity IS NOT NULL
), full_courses AS (
    SELECT coalesce(array_agg(id ORDER BY id), '{}') AS course_ids
      FROM limited
     WHERE enrolled >= capacity
       AND id IN (SELECT course_id FROM requested)
       AND id NOT IN (SELECT course_id FROM current)
), unknown AS (
    SELECT coalesce(array_agg(r.course_id ORDER BY r.course_id), '{}') AS course_ids
      FROM requested r
     WHERE r.course_id NOT IN (SELECT id FROM known)
), removed AS (
    DELETE FROM student_courses sc
     USING unknown, full_courses, stale
     WHERE sc.student_id = $1
       AND cardinality(unknown.course_ids) = 0
       AND cardinality(full_courses.course_ids) = 0
       AND cardinality(stale.course_ids) = 0
       AND sc.course_id NOT IN (SELECT id FROM known)
    RETURNING sc.course_id
), inserted AS (
    INSERT INTO student_courses (student_id, course_id)
    SELECT $1, known.id
      FROM known, unknown, full_courses, stale
     WHERE cardinality(unknown.course_ids) = 0
       AND cardinality(full_courses.course_ids) = 0
       AND cardinality(stale.course_ids) = 0
        ON CONFLICT (student_id, course_id) DO NOTHING
    RETURNING course_id, enrolled_at
), counted AS (
    -- From the row as `limited` locked it, with its capacity: see assign.sql.
    UPDATE courses c
       SET enrolled = l.enrolled + d.delta, capacity = l.capacity
      FROM limited l
      JOIN (SELECT course_id, sum(delta) AS delta
              FROM (SELECT course_id, -1 AS delta FROM removed
                     UNION ALL
                    SELECT course_id, 1 FROM inserted) AS changes
             GROUP BY course_id) AS d ON d.course_id = l.id
     WHERE c.id = l.id
       AND l.capacity IS NOT NULL
), events AS (
    INSERT INTO events (type, actor, student_ids, course_ids)
    SELECT type, $3::bigint, array_agg($1::bigint), array_agg(course_id ORDER BY course_id)
      FROM (SELECT 1 AS step, course_id, 'enrollment.deleted' AS type FROM removed
             UNION ALL
            SELECT 2, course_id, 'enrollment.created' FROM inserted) AS e
     GROUP BY step, type
     ORDER BY step
), enrolled AS (
    SELECT course_id, enrolled_at FROM student_courses
     WHERE student_id = $1 AND course_id IN (SELECT id FROM known)
     UNION ALL
    SELECT course_id, enrolled_at FROM inserted
)
SELECT (SELECT course_ids FROM unknown) AS unknown_course_ids,
       (SELECT course_ids FROM full_courses) AS full_course_ids,
       (SELECT course_ids FROM stale) AS stale_course_ids,
       (SELECT coalesce(json_agg(json_build_object(
                   'id', c.id, 'code', c.code, 'title', c.title,
                   'enrolled_at', api_time(e.enrolled_at))
                   ORDER BY c.id), '[]')
          FROM enrolled e
          JOIN courses c ON c.id = e.course_id)::text AS courses;
