-- POST /students/{id}/courses when a course it names has a capacity (assign_unlimited.sql
-- takes the others), in one round trip. $1 student id, $2 course ids (bigint[]),
-- $3 actor. Writes only when the student exists, every id names a course and every course
-- with a capacity has a seat for the student (one already taken counts once); repeats are
-- no-ops. Each enrollment it adds records an enrollment.created event; none added, none.
--  * The student row is locked first: enrollment writes of one student never interleave
--    (no deadlocks), and a student deleted meanwhile reads as missing. Lock order, in every
--    enrollment write: students, then courses.
--  * The courses this statement's snapshot shows with a capacity are locked FOR NO KEY
--    UPDATE, in id order, and admitted on their counter, which that lock re-reads (a
--    count(*) in this statement would not see what the previous lock holder committed).
--  * The others are locked FOR KEY SHARE, as before capacities existed: never harder, and
--    their rows are never written. Not the limited ones too: on a hot course every waiting
--    KEY SHARE locker is carried into each new row version (measured: a third of the rate).
--  * Either lock makes a course deleted meanwhile read as unknown, keeps it from being
--    deleted until this commits, and keeps its capacity as the lock read it (setting one
--    takes FOR UPDATE: courses/lock.sql). A course whose limit was lifted meanwhile comes
--    back from the first lock without one: it is taken as unlimited. One given a capacity
--    since the snapshot comes back from the second lock with it (see courses/lock.sql):
--    then nothing is written and `stale_course_ids` names it; the caller runs the statement
--    again, and its new snapshot shows the capacity.
-- `limited_course_ids`: the requested courses with a capacity, as locked (which statement the
-- caller tries first next time: assign_unlimited.sql costs less when there are none).
-- `complete` is false when a requested course was enrolled by a concurrent request this
-- statement's snapshot cannot see; the caller then re-reads the list.
WITH student AS (
    SELECT id FROM students WHERE id = $1 FOR NO KEY UPDATE
), requested AS (
    SELECT DISTINCT unnest($2::bigint[]) AS course_id
), limited AS (
    -- The capacity filter is in the subquery, read in the snapshot, so that the lock returns
    -- the row whatever its capacity is now.
    SELECT id, capacity, enrolled
      FROM courses
     WHERE id = ANY (ARRAY(SELECT c.id FROM courses c, student
                            WHERE c.id = ANY ($2::bigint[]) AND c.capacity IS NOT NULL))
     ORDER BY id
       FOR NO KEY UPDATE
), unlimited AS (
    -- After `limited` (the join with its count): every enrollment write takes its FOR NO KEY
    -- UPDATE locks before its FOR KEY SHARE ones, each kind in id order. In the other order a
    -- PATCH queued for a course (FOR UPDATE: later lockers queue behind it) closes a cycle,
    -- one write holding KEY SHARE on it and waiting for a course the other holds, the other
    -- waiting behind the PATCH (the storm in tests/test_capacity.py found it).
    SELECT id, capacity
      FROM courses
     WHERE id = ANY (ARRAY(SELECT c.id
                             FROM courses c, student, (SELECT count(*) FROM limited) AS after_limited
                            WHERE c.id = ANY ($2::bigint[]) AND c.capacity IS NULL))
     ORDER BY id
       FOR KEY SHARE
), known AS (
    SELECT id FROM limited UNION ALL SELECT id FROM unlimited
), stale AS (
    SELECT coalesce(array_agg(id ORDER BY id), '{}') AS course_ids FROM unlimited WHERE capacity IS NOT NULL
), taken AS (
    -- Which limited courses the student takes now: read fresh, under the student's lock.
    SELECT e.course_id
      FROM (SELECT array_agg($1::bigint) AS students, array_agg(id) AS courses
              FROM limited WHERE capacity IS NOT NULL) AS p,
           enrollments_now(p.students, p.courses) AS e
     WHERE p.courses IS NOT NULL
), full_courses AS (
    SELECT coalesce(array_agg(id ORDER BY id), '{}') AS course_ids
      FROM limited
     WHERE enrolled >= capacity
       AND id NOT IN (SELECT course_id FROM taken)
), unknown AS (
    SELECT coalesce(array_agg(r.course_id ORDER BY r.course_id), '{}') AS course_ids
      FROM requested r
     WHERE r.course_id NOT IN (SELECT id FROM known)
), inserted AS (
    INSERT INTO student_courses (student_id, course_id)
    SELECT student.id, known.id
      FROM student, known, unknown, full_courses, stale
     WHERE cardinality(unknown.course_ids) = 0
       AND cardinality(full_courses.course_ids) = 0
       AND cardinality(stale.course_ids) = 0
        ON CONFLICT (student_id, course_id) DO NOTHING
    RETURNING course_id, enrolled_at
), counted AS (
    -- The counter is written from the row as `limited` locked it (the latest), with its capacity:
    -- PostgreSQL checks courses_within_capacity on the row version of this statement's snapshot
    -- before it re-reads a row changed meanwhile, and that version may be older than a seat
    -- given back (the capacity cannot change while this statement holds the lock).
    UPDATE courses c
       SET enrolled = l.enrolled + 1, capacity = l.capacity
      FROM limited l
     WHERE c.id = l.id
       AND l.capacity IS NOT NULL
       AND l.id IN (SELECT course_id FROM inserted)
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
       (SELECT course_ids FROM full_courses) AS full_course_ids,
       (SELECT course_ids FROM stale) AS stale_course_ids,
       (SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM limited WHERE capacity IS NOT NULL)
           AS limited_course_ids,
       NOT EXISTS (SELECT FROM known WHERE id NOT IN (SELECT course_id FROM enrolled)) AS complete,
       (SELECT coalesce(json_agg(json_build_object(
                   'id', c.id, 'code', c.code, 'title', c.title,
                   'enrolled_at', api_time(e.enrolled_at))
                   ORDER BY c.id), '[]')
          FROM enrolled e
          JOIN courses c ON c.id = e.course_id)::text AS courses;
