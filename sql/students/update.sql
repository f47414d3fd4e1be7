-- $1 id; $2 name and $3 email, each NULL to keep the current value; $4 actor.
-- A student.updated event only when a value really changes.
WITH before AS (
    SELECT id, name, email FROM students WHERE id = $1 FOR NO KEY UPDATE
), updated AS (
    UPDATE students s
       SET name  = coalesce($2, s.name),
           email = coalesce($3, s.email)
      FROM before b
     WHERE s.id = b.id
    RETURNING s.id, s.name, s.email, s.created_at,
              (s.name, s.email) IS DISTINCT FROM (b.name, b.email) AS changed
), event AS (
    INSERT INTO events (type, actor, data)
    SELECT 'student.updated', $4::bigint, student_json(id, name, email, created_at) FROM updated WHERE changed
)
SELECT id, name, email, created_at FROM updated;
