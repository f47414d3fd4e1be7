DROP FUNCTION course_json(bigint, text, text, timestamptz);
DROP FUNCTION student_json(bigint, text, text, timestamptz);
DROP FUNCTION api_time(timestamptz);
DROP TABLE events_removed;
DROP TABLE events;
