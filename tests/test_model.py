"""Random sequences of enrollment calls against the real API and database, checked against a model.

The model is API.md's rules written as plainly as possible: live students, live courses and
the set of (student, course) enrollments. Every answer is compared with what the model
predicts, and after every step the database must hold exactly the model.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from datetime import datetime
from itertools import count
from typing import Any

import httpx
import psycopg
import pytest
from helpers import MAX_ID, PageWalk, assert_problem, bearer, course_list, ids
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from litestar import Litestar
from litestar.testing import TestClient

from service.app import create_app
from service.settings import Settings

Client = TestClient[Litestar]
Sql = psycopg.Connection[tuple[Any, ...]]

# Identities restart at 1 for every example, which takes a few dozen steps: ids this large name nothing.
NEVER_ISSUED = st.integers(min_value=10**12, max_value=MAX_ID)

MACHINE_SETTINGS = settings(
    max_examples=50,
    stateful_step_count=30,
    deadline=None,
    report_multiple_bugs=False,
    # Everything but `explain`, which re-runs a failure for minutes (each example is many HTTP calls).
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.fixture(scope="module")
def sync_client(migrated_url: str, admin_key: str) -> Iterator[Client]:
    """A synchronous client (hypothesis machines are synchronous); its lifespan opens a real pool."""
    app = create_app(Settings(database_url=migrated_url, pool_min_size=1, pool_max_size=4))
    with TestClient(app=app) as client:
        client.headers.update(bearer(admin_key))
        yield client


@pytest.fixture(scope="module")
def sql(migrated_url: str) -> Iterator[Sql]:
    """A direct connection, to empty the tables between examples and read what the API wrote."""
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        yield conn


class EnrollmentModel:
    """API.md in memory: what exists, and who takes what (with the enrolled_at the API answered)."""

    def __init__(self) -> None:
        self.students: dict[int, tuple[str, str]] = {}  # live id -> (name, email)
        self.courses: dict[int, tuple[str, str]] = {}  # live id -> (code, title)
        self.enrolled_at: dict[tuple[int, int], datetime] = {}  # (student, course) -> enrolled_at
        self.ever_students: list[int] = []  # deleted ones stay: they name nothing any more
        self.ever_courses: list[int] = []

    def courses_of(self, student_id: int) -> list[int]:
        return sorted(c for s, c in self.enrolled_at if s == student_id)

    def students_of(self, course_id: int) -> list[int]:
        return sorted(s for s, c in self.enrolled_at if c == course_id)

    def unknown(self, course_ids: list[int]) -> list[int]:
        return sorted(set(course_ids) - self.courses.keys())


def some_id(live: Collection[int], ever: list[int]) -> st.SearchStrategy[int]:
    """Mostly a live id; sometimes any id ever issued (perhaps deleted); rarely one never issued."""
    choices = [st.sampled_from(sorted(live))] * 7 if live else []
    return st.one_of(*choices, st.sampled_from(ever), st.sampled_from(ever), NEVER_ISSUED)


class EnrollmentMachine(RuleBasedStateMachine):
    """Drives the real API; each rule predicts the answer from the model, then checks it."""

    def __init__(self, client: Client, conn: Sql) -> None:
        super().__init__()
        self.client, self.conn = client, conn
        self.conn.execute("TRUNCATE students, courses RESTART IDENTITY CASCADE")
        self.model = EnrollmentModel()
        self.serial = count(1)

    def draw_student(self, data: st.DataObject) -> int:
        return data.draw(some_id(self.model.students, self.model.ever_students), label="student_id")

    def draw_course(self, data: st.DataObject) -> int:
        return data.draw(some_id(self.model.courses, self.model.ever_courses), label="course_id")

    def draw_course_ids(self, data: st.DataObject, *, min_size: int) -> list[int]:
        """Mostly live courses (repeats are common), sometimes mixed with ids that name nothing."""
        mixed = st.lists(some_id(self.model.courses, self.model.ever_courses), min_size=1, max_size=6)
        known = st.lists(st.sampled_from(sorted(self.model.courses)), min_size=min_size, max_size=6)
        choice = st.one_of(known, known, mixed) if self.model.courses else mixed
        return data.draw(choice, label="course_ids")

    # Creating

    @initialize()
    def a_few_students_and_courses(self) -> None:
        for _ in range(2):
            self.create_student()
        for _ in range(3):
            self.create_course()

    @rule()
    def create_student(self) -> None:
        n = next(self.serial)
        name, email = f"Student {n}", f"student{n}@example.org"
        response = self.client.post("/students", json={"name": name, "email": email})
        assert response.status_code == 201, response.text
        student = response.json()
        assert (student["name"], student["email"]) == (name, email)
        assert response.headers["location"] == f"/students/{student['id']}"
        self.model.students[student["id"]] = (name, email)
        self.model.ever_students.append(student["id"])

    @rule()
    def create_course(self) -> None:
        n = next(self.serial)
        code, title = f"C{n}", f"Course {n}"
        response = self.client.post("/courses", json={"code": code, "title": title})
        assert response.status_code == 201, response.text
        course = response.json()
        assert (course["code"], course["title"]) == (code, title)
        self.model.courses[course["id"]] = (code, title)
        self.model.ever_courses.append(course["id"])

    # Assigning

    @rule(data=st.data())
    def assign(self, data: st.DataObject) -> None:
        student_id, course_ids = self.draw_student(data), self.draw_course_ids(data, min_size=1)
        response = self.client.post(f"/students/{student_id}/courses", json={"course_ids": course_ids})
        self.check_assignment(response, student_id, course_ids, replace=False)

    @rule(data=st.data())
    def replace(self, data: st.DataObject) -> None:
        student_id, course_ids = self.draw_student(data), self.draw_course_ids(data, min_size=0)
        response = self.client.put(f"/students/{student_id}/courses", json={"course_ids": course_ids})
        self.check_assignment(response, student_id, course_ids, replace=True)

    def check_assignment(
        self, response: httpx.Response, student_id: int, course_ids: list[int], *, replace: bool
    ) -> None:
        """The rules POST and PUT share: 404 first, then all-or-nothing 422, else the full list."""
        model = self.model
        if student_id not in model.students:
            assert_problem(response, 404)
            return
        if unknown := model.unknown(course_ids):
            body = assert_problem(response, 422)
            assert body["unknown_course_ids"] == unknown
            return
        kept = set() if replace else set(model.courses_of(student_id))
        answered = course_list(response)
        assert ids(answered) == sorted(kept | set(course_ids))
        self.check_course_rows(answered)
        for course_id in set(model.courses_of(student_id)) - set(ids(answered)):
            del model.enrolled_at[student_id, course_id]
        for row in answered:
            at, key = datetime.fromisoformat(row["enrolled_at"]), (student_id, row["id"])
            if not replace and key in model.enrolled_at:
                # Assigning a course the student already has adds no row: its enrolled_at stays.
                assert at == model.enrolled_at[key], row
            model.enrolled_at[key] = at

    def check_course_rows(self, answered: list[dict[str, Any]]) -> None:
        for row in answered:
            assert (row["code"], row["title"]) == self.model.courses[row["id"]], row

    # Removing and deleting

    @rule(data=st.data())
    def remove_one(self, data: st.DataObject) -> None:
        self.check_removal(self.draw_student(data), self.draw_course(data))

    @precondition(lambda self: bool(self.model.enrolled_at))
    @rule(data=st.data())
    def remove_an_existing_enrollment(self, data: st.DataObject) -> None:
        self.check_removal(*data.draw(st.sampled_from(sorted(self.model.enrolled_at)), label="enrollment"))

    def check_removal(self, student_id: int, course_id: int) -> None:
        response = self.client.delete(f"/students/{student_id}/courses/{course_id}")
        if (student_id, course_id) in self.model.enrolled_at:
            assert response.status_code == 204, response.text
            del self.model.enrolled_at[student_id, course_id]
        else:
            assert_problem(response, 404)

    @rule(data=st.data())
    def delete_student(self, data: st.DataObject) -> None:
        student_id = self.draw_student(data)
        response = self.client.delete(f"/students/{student_id}")
        if student_id not in self.model.students:
            assert_problem(response, 404)
            return
        assert response.status_code == 204, response.text
        del self.model.students[student_id]
        for key in [k for k in self.model.enrolled_at if k[0] == student_id]:
            del self.model.enrolled_at[key]  # the student's enrollments go with it

    @rule(data=st.data())
    def delete_course(self, data: st.DataObject) -> None:
        course_id = self.draw_course(data)
        response = self.client.delete(f"/courses/{course_id}")
        if course_id not in self.model.courses:
            assert_problem(response, 404)
        elif self.model.students_of(course_id):
            assert_problem(response, 409)  # no enrollment is ever dropped by deleting a course
        else:
            assert response.status_code == 204, response.text
            del self.model.courses[course_id]

    # Reading

    @rule(data=st.data())
    def get_student_courses(self, data: st.DataObject) -> None:
        self.check_student_courses(self.draw_student(data))

    def check_student_courses(self, student_id: int) -> None:
        response = self.client.get(f"/students/{student_id}/courses")
        if student_id not in self.model.students:
            assert_problem(response, 404)
            return
        answered = course_list(response)
        assert ids(answered) == self.model.courses_of(student_id)
        self.check_course_rows(answered)
        for row in answered:
            assert datetime.fromisoformat(row["enrolled_at"]) == self.model.enrolled_at[student_id, row["id"]]

    @rule(data=st.data(), limit=st.integers(min_value=1, max_value=4))
    def list_course_students(self, data: st.DataObject, limit: int) -> None:
        self.check_course_students(self.draw_course(data), limit)

    def check_course_students(self, course_id: int, limit: int) -> None:
        path = f"/courses/{course_id}/students"
        response = self.client.get(path, params={"limit": limit})
        if course_id not in self.model.courses:
            assert_problem(response, 404)
            return
        seen = self.walk_pages(response, path, limit)
        assert [s["id"] for s in seen] == self.model.students_of(course_id)
        for student in seen:
            assert (student["name"], student["email"]) == self.model.students[student["id"]]

    def walk_pages(self, first: httpx.Response, path: str, limit: int) -> list[dict[str, Any]]:
        """Follow `next_after` to the end; it is null exactly on the page that holds the last row."""
        walk = PageWalk(limit)
        walk.take(first)
        while walk.more:
            walk.take(self.client.get(path, params=walk.params))
        return walk.items

    # The whole state

    @invariant()
    def the_database_holds_exactly_the_model(self) -> None:
        rows = self.conn.execute("SELECT student_id, course_id, enrolled_at FROM student_courses").fetchall()
        assert {(s, c): at for s, c, at in rows} == self.model.enrolled_at
        assert {r[0] for r in self.conn.execute("SELECT id FROM students")} == self.model.students.keys()
        assert {r[0] for r in self.conn.execute("SELECT id FROM courses")} == self.model.courses.keys()

    def teardown(self) -> None:
        """At the end of a sequence every read the API offers agrees with the model."""
        for student_id in self.model.ever_students:
            self.check_student_courses(student_id)
        for course_id in self.model.ever_courses:
            self.check_course_students(course_id, limit=2)
        for path, live in (("/students", self.model.students), ("/courses", self.model.courses)):
            listed = self.walk_pages(self.client.get(path, params={"limit": 3}), path, limit=3)
            assert [item["id"] for item in listed] == sorted(live)


def test_random_enrollment_sequences_behave_like_the_model_of_api_md(sync_client: Client, sql: Sql) -> None:
    """Any sequence of creates, assigns, replaces, removals, deletes and reads matches the model."""

    class Machine(EnrollmentMachine):
        def __init__(self) -> None:
            super().__init__(sync_client, sql)

    run_state_machine_as_test(Machine, settings=MACHINE_SETTINGS)
