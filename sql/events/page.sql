-- GET /events: $1 the last id the consumer has, $2 the feed's horizon (every id up to it is
-- settled: see service/events/feed.py), $3 rows to fetch. Always one row at least, with
-- how far retention has removed events; the event columns are NULL when none follows.
SELECT r.through AS removed_through, e.id, e.item
  FROM events_removed r
  LEFT JOIN LATERAL (
        SELECT id,
               json_build_object('id', id, 'type', type, 'at', api_time(at), 'actor', actor, 'data',
                   CASE type
                       WHEN 'enrollment.created' THEN json_build_object(
                           'student_id', student_id, 'course_id', course_id, 'enrolled_at', api_time(at))
                       WHEN 'enrollment.deleted' THEN json_build_object(
                           'student_id', student_id, 'course_id', course_id)
                       ELSE data
                   END)::text AS item
          FROM events
         WHERE id > $1 AND id <= $2
         ORDER BY id
         LIMIT $3
       ) e ON true
 ORDER BY e.id;
