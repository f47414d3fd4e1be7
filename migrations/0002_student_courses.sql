-- depends: 0001_students_and_courses
-- Which student takes which course. A student's enrollments go with the student;
-- a course cannot be deleted while anyone is enrolled in it.
CREATE TABLE student_courses (
    student_id  bigint      NOT NULL REFERENCES students (id) ON DELETE CASCADE,
    course_id   bigint      NOT NULL REFERENCES courses (id) ON DELETE RESTRICT,
    enrolled_at timestamptz NOT NULL DEFAULT now(),
    -- INCLUDE lets a student's course list be read by an index-only scan.
    PRIMARY KEY (student_id, course_id) INCLUDE (enrolled_at)
);
-- The reverse lookup: the students of a course, in id order.
CREATE INDEX student_courses_course_id_student_id_idx ON student_courses (course_id, student_id);
