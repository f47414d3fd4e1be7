-- GET /events: $1 the last event id the consumer has, $2 the feed's horizon (every row up
-- to it is settled: see service/events/feed.py), $3 events to fetch. Always one row at
-- least, with how far retention has removed events; the event columns are NULL when none
-- follows. A row holding several events (its arrays) is expanded here, event id id + i;
-- only the rows the page needs are expanded (their sizes `n` are read first), so a page
-- after a 10,000-pair bulk row reads that row, not a hundred like it.
SELECT r.through AS removed_through, e.id, e.item
  FROM events_removed r
  LEFT JOIN LATERAL (
        WITH candidates AS (
            SELECT id, n FROM events
             WHERE id > $1::bigint - 16384 AND id <= $2
             ORDER BY id
             LIMIT $3 + 1
        ), needed AS (
            -- Rows whose events before them (the first row's may all be at or below $1)
            -- cannot already fill the page.
            SELECT id FROM (SELECT id, sum(n) OVER (ORDER BY id) - n AS before FROM candidates) AS c
             WHERE before < $3 + 16384
        ), picked AS (
            SELECT x.id + coalesce(p.i, 1) - 1 AS event_id, x.type, x.at, x.actor, x.data,
                   p.student_id, p.course_id
              FROM events x
              LEFT JOIN LATERAL unnest(x.student_ids, x.course_ids) WITH ORDINALITY AS p(student_id, course_id, i)
                ON true
             WHERE x.id IN (SELECT id FROM needed)
               AND x.id + coalesce(p.i, 1) - 1 > $1
             ORDER BY 1
             LIMIT $3
        )
        SELECT event_id AS id,
               json_build_object('id', event_id, 'type', type, 'at', api_time(at), 'actor', actor, 'data',
                   CASE type
                       WHEN 'enrollment.created' THEN json_build_object(
                           'student_id', student_id, 'course_id', course_id, 'enrolled_at', api_time(at))
                       WHEN 'enrollment.deleted' THEN json_build_object(
                           'student_id', student_id, 'course_id', course_id)
                       ELSE data
                   END)::text AS item
          FROM picked
       ) e ON true
 ORDER BY e.id;
