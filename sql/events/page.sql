-- GET /events: $1 the last event id the consumer has, $2 the feed's horizon (every row up
-- to it is settled: see service/events/feed.py), $3 events to fetch. Always one row at
-- least, with how far retention has removed events; the event columns are NULL when none
-- follows. A row holding several events (its arrays) is expanded here, event id id + i.
SELECT r.through AS removed_through, e.id, e.item
  FROM events_removed r
  LEFT JOIN LATERAL (
        SELECT x.id + coalesce(p.i, 1) - 1 AS id,
               json_build_object('id', x.id + coalesce(p.i, 1) - 1, 'type', x.type, 'at', api_time(x.at),
                   'actor', x.actor, 'data',
                   CASE x.type
                       WHEN 'enrollment.created' THEN json_build_object(
                           'student_id', p.student_id, 'course_id', p.course_id, 'enrolled_at', api_time(x.at))
                       WHEN 'enrollment.deleted' THEN json_build_object(
                           'student_id', p.student_id, 'course_id', p.course_id)
                       ELSE x.data
                   END)::text AS item
          FROM (SELECT id, type, at, actor, student_ids, course_ids, data
                  FROM events
                 WHERE id > $1::bigint - 16384 AND id <= $2
                 ORDER BY id
                 LIMIT $3 + 1) AS x
          LEFT JOIN LATERAL unnest(x.student_ids, x.course_ids) WITH ORDINALITY AS p(student_id, course_id, i)
            ON true
         WHERE x.id + coalesce(p.i, 1) - 1 > $1
         ORDER BY 1
         LIMIT $3
       ) e ON true
 ORDER BY e.id;
