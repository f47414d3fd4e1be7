-- $1 id, $2 actor. The foreign key refuses (foreign_key_violation) while anyone is enrolled.
WITH removed AS (
    DELETE FROM courses WHERE id = $1 RETURNING id
), event AS (
    INSERT INTO events (type, actor, data)
    SELECT 'course.deleted', $2::bigint, json_build_object('id', id) FROM removed
)
SELECT id FROM removed;
