-- One tick of the feed's watcher (service/events/feed.py): this statement's snapshot
-- (its xmin: the oldest transaction still running; its xmax: the next transaction id),
-- the last row id handed out, read after the snapshot was taken, and the newest event id
-- in the rows at or below $1, the horizon settled so far.
SELECT pg_snapshot_xmin(s)::text::bigint AS xmin,
       pg_snapshot_xmax(s)::text::bigint AS xmax,
       (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM events_id_seq) AS issued,
       coalesce((SELECT id + coalesce(cardinality(course_ids), 1) - 1
                   FROM events WHERE id <= $1 ORDER BY id DESC LIMIT 1), 0) AS newest
  FROM pg_current_snapshot() AS s;
