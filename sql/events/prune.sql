-- Retention: removes up to $2 of the oldest rows of events, if older than $1 days, from the
-- low end of the feed only (it stops at the first younger one), and moves
-- events_removed.through to the last event id removed, so that a consumer behind it gets
-- a 410. Answers how many rows it removed.
WITH head AS (
    SELECT id, at FROM events ORDER BY id LIMIT $2
), doomed AS (
    SELECT id FROM head
     WHERE id < coalesce((SELECT min(id) FROM head WHERE at >= now() - make_interval(days => $1)),
                         9223372036854775807)
), removed AS (
    DELETE FROM events WHERE id IN (SELECT id FROM doomed)
    RETURNING id + coalesce(cardinality(course_ids), 1) - 1 AS last_event
), moved AS (
    UPDATE events_removed SET through = greatest(through, (SELECT max(last_event) FROM removed))
     WHERE EXISTS (SELECT FROM removed)
)
SELECT count(*) AS removed FROM removed;
