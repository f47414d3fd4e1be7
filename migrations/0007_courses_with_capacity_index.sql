-- depends: 0006_idempotency_keys
-- Which of the courses a POST names have a capacity (sql/enrollments/assign_unlimited.sql):
-- an index of only those courses, usually few, answers without reading the courses at all.
CREATE INDEX courses_with_capacity_idx ON courses (id) WHERE capacity IS NOT NULL;
