-- One tick of the feed's watcher (service/events/feed.py). $1 the horizon settled so far;
-- $2 whether to take a transaction id: this statement's own xid, assigned after the
-- previous tick read `issued`, so above the xid of every writer that had taken an event
-- id by then. Answers the xmin of this statement's snapshot (taken after the previous
-- tick committed), that xid (or NULL), the last row id handed out, read now, and the
-- newest event id in the rows at or below $1.
SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin,
       CASE WHEN $2::boolean THEN pg_current_xact_id()::text::bigint END AS xid,
       (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM events_id_seq) AS issued,
       coalesce((SELECT id + coalesce(cardinality(course_ids), 1) - 1
                   FROM events WHERE id <= $1 ORDER BY id DESC LIMIT 1), 0) AS newest;
