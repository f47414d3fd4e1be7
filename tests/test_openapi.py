"""The published OpenAPI document describes the contract."""

from __future__ import annotations

import re
from typing import Any

import httpx
from helpers import assert_problem

Client = httpx.AsyncClient
METHODS = ("get", "post", "put", "patch", "delete")


async def openapi(client: Client) -> dict[str, Any]:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


def operations(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        op["operationId"]: op
        for item in doc["paths"].values()
        for method, op in item.items()
        if method in METHODS
    }


async def test_the_document_has_title_version_and_tags(client: Client) -> None:
    doc = await openapi(client)
    assert doc["info"]["title"] == "Enrollment API"
    assert doc["info"]["version"]
    assert {"students", "courses", "operations"} <= {t["name"] for t in doc["tags"]}


async def test_every_operation_has_a_summary_a_tag_and_problem_responses(client: Client) -> None:
    for name, op in operations(await openapi(client)).items():
        assert op.get("summary"), name
        assert op.get("tags"), name
        assert "400" not in op["responses"], f"{name} documents Litestar's legacy 400"
        for status, response in op["responses"].items():
            if status.startswith(("4", "5")):
                assert "application/problem+json" in response["content"], (name, status)


async def test_the_student_operations_document_their_bodies_and_errors(client: Client) -> None:
    ops = operations(await openapi(client))
    assert set(ops["CreateStudent"]["responses"]) >= {"201", "409", "422"}
    assert "requestBody" in ops["CreateStudent"]
    assert set(ops["GetStudent"]["responses"]) >= {"200", "404", "422"}
    assert set(ops["UpdateStudent"]["responses"]) >= {"200", "404", "409", "422"}
    assert set(ops["DeleteStudent"]["responses"]) >= {"204", "404", "422"}
    student_id = ops["GetStudent"]["parameters"][0]["schema"]
    assert student_id["minimum"] == 1
    assert student_id["maximum"] == 2**63 - 1


async def test_the_docs_pages_are_served(client: Client) -> None:
    for path in ("/schema", "/schema/swagger"):
        response = await client.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html")


async def test_an_unknown_schema_path_is_a_404_problem(client: Client) -> None:
    assert_problem(await client.get("/schema/nothing"), 404)


async def test_the_five_enrollment_operations_are_documented(client: Client) -> None:
    doc = await openapi(client)
    ops = operations(doc)
    for name in (
        "AssignCourses",
        "ReplaceCourses",
        "ListStudentCourses",
        "RemoveCourse",
        "ListCourseStudents",
    ):
        assert name in ops, name
        assert "enrollments" in ops[name]["tags"]
        assert {"404", "422"} <= set(ops[name]["responses"]), name
    for name in ("AssignCourses", "ReplaceCourses"):
        body = ops[name]["requestBody"]["content"]["application/json"]["schema"]
        assert body["$ref"].rsplit("/", 1)[1] in doc["components"]["schemas"]
    for name in ("AssignCourses", "ReplaceCourses", "ListStudentCourses"):
        ok = ops[name]["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok["type"] == "array"
        assert ok["items"]["$ref"].endswith("/EnrolledCourse")
    enrolled = doc["components"]["schemas"]["EnrolledCourse"]
    assert set(enrolled["required"]) == {"id", "code", "title", "enrolled_at"}
    assert "unknown_course_ids" in doc["components"]["schemas"]["Problem"]["properties"]
    assert "409" in ops["DeleteCourse"]["responses"]


async def test_the_assignment_bounds_are_documented(client: Client) -> None:
    schemas = (await openapi(client))["components"]["schemas"]
    assert schemas["CourseAssignment"]["properties"]["course_ids"]["minItems"] == 1
    assert schemas["CourseAssignment"]["properties"]["course_ids"]["maxItems"] == 1000
    assert schemas["CourseAssignment"]["properties"]["course_ids"]["items"]["minimum"] == 1
    assert schemas["CourseAssignment"]["properties"]["course_ids"]["items"]["maximum"] == 2**63 - 1
    assert schemas["CourseReplacement"]["properties"]["course_ids"].get("minItems", 0) == 0
    assert schemas["CourseReplacement"]["properties"]["course_ids"]["maxItems"] == 1000


async def test_the_document_passes_the_oas_lint_rules(client: Client) -> None:
    """What Spectral's `spectral:oas` ruleset warns about, checked here so it stays at zero."""
    doc = await openapi(client)
    assert doc["info"].get("description")
    assert doc["info"].get("contact")
    declared_tags = {tag["name"] for tag in doc["tags"]}
    assert all(tag.get("description") for tag in doc["tags"])
    ops = operations(doc)
    assert len(ops) == sum(method in METHODS for item in doc["paths"].values() for method in item)
    for name, op in ops.items():
        assert op.get("summary"), name
        assert len(op.get("description", "")) >= 40, f"{name} says too little about what it guarantees"
        assert set(op["tags"]) <= declared_tags, name


async def test_every_protected_operation_documents_its_key_scope_401_and_403(client: Client) -> None:
    doc = await openapi(client)
    scheme = doc["components"]["securitySchemes"]["apiKey"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    ops = operations(doc)
    open_ops = {"Health", "Ready"}
    assert open_ops <= set(ops)
    for name, op in ops.items():
        if name in open_ops:
            assert "security" not in op, name
            continue
        assert op["security"] == [{"apiKey": []}], name
        scope = re.search(r"Needs the `(read|write|admin)` scope\.", op["description"])
        assert scope, name
        assert {"401", "403"} <= set(op["responses"]), name
        assert scope.group(1) in op["responses"]["403"]["description"], name
    assert re.search("`read`", ops["GetStudent"]["description"])
    assert re.search("`write`", ops["AssignCourses"]["description"])
    assert re.search("`admin`", ops["RevokeApiKey"]["description"])


async def test_the_feed_documents_one_typed_event_per_type(client: Client) -> None:
    doc = await openapi(client)
    schemas = doc["components"]["schemas"]
    ok = operations(doc)["ListEvents"]["responses"]["200"]["content"]["application/json"]["schema"]
    page = schemas[ok["$ref"].rsplit("/", 1)[1]]
    union = page["properties"]["items"]["items"]
    mapping = union["discriminator"]["mapping"]
    assert union["discriminator"]["propertyName"] == "type"
    assert set(mapping) == {
        f"{thing}.{change}"
        for thing in ("student", "course", "enrollment")
        for change in ("created", "updated", "deleted")
    } - {"enrollment.updated"}
    data_of = {tag: schemas[ref.rsplit("/", 1)[1]]["properties"]["data"] for tag, ref in mapping.items()}
    assert data_of["student.created"] == {"$ref": "#/components/schemas/Student"}
    assert data_of["course.updated"] == {"$ref": "#/components/schemas/Course"}
    added = schemas[data_of["enrollment.created"]["$ref"].rsplit("/", 1)[1]]
    assert set(added["properties"]) == {"student_id", "course_id", "enrolled_at"}
    assert {"200", "410", "422", "401", "403"} <= set(operations(doc)["ListEvents"]["responses"])


async def test_the_conditional_and_retry_headers_and_their_answers_are_documented(client: Client) -> None:
    ops = operations(await openapi(client))

    def request_headers(op_id: str) -> set[str]:
        return {p["name"] for p in ops[op_id].get("parameters", []) if p["in"] == "header"}

    def answer_headers(op_id: str, status: str) -> set[str]:
        return set(ops[op_id]["responses"][status].get("headers", {}))

    for op_id in ("GetStudent", "GetCourse", "ListStudentCourses"):
        assert "If-None-Match" in request_headers(op_id)
        assert "ETag" in answer_headers(op_id, "200")
        assert "ETag" in answer_headers(op_id, "304")
    for op_id in ("UpdateStudent", "UpdateCourse", "ReplaceCourses", "DeleteStudent", "DeleteCourse"):
        assert "If-Match" in request_headers(op_id)
        assert "412" in ops[op_id]["responses"]
    for op_id in ("UpdateStudent", "UpdateCourse", "ReplaceCourses"):
        assert "ETag" in answer_headers(op_id, "200")
    for op_id in ("CreateStudent", "CreateCourse"):
        assert "Idempotency-Key" in request_headers(op_id)
        assert {"Location", "Idempotent-Replayed"} <= answer_headers(op_id, "201")
        assert "409" in ops[op_id]["responses"]
    assert "Idempotency-Key" not in request_headers("CreateApiKey")


async def test_the_bulk_route_documents_its_bounds_and_413(client: Client) -> None:
    doc = await openapi(client)
    pairs = doc["components"]["schemas"]["BulkEnrollment"]["properties"]["enrollments"]
    assert (pairs["minItems"], pairs["maxItems"]) == (1, 10000)
    assert "413" in operations(doc)["EnrollPairs"]["responses"]


async def test_the_capacity_its_bounds_and_its_409s_are_documented(client: Client) -> None:
    doc = await openapi(client)
    schemas = doc["components"]["schemas"]
    course = schemas["Course"]
    assert {"capacity", "enrolled"} <= set(course["required"])
    assert course["properties"]["enrolled"]["readOnly"] is True
    assert course["properties"]["enrolled"]["minimum"] == 0
    for name in ("Course", "CourseCreate", "CourseUpdate"):
        capacity = schemas[name]["properties"]["capacity"]
        assert (capacity["minimum"], capacity["maximum"]) == (1, 100_000), name
        assert {"type": "null"} in capacity["oneOf"], name
    assert "capacity" not in schemas["CourseCreate"].get("required", [])
    assert "enrolled" not in schemas["CourseCreate"]["properties"]
    assert "enrolled" not in schemas["CourseUpdate"]["properties"]
    assert "full_course_ids" in schemas["Problem"]["properties"]
    ops = operations(doc)
    for name in ("AssignCourses", "ReplaceCourses", "EnrollPairs"):
        assert "`full_course_ids`" in ops[name]["responses"]["409"]["description"], name
        assert "capacity" in ops[name]["description"], name
    assert "`capacity`" in ops["UpdateCourse"]["responses"]["409"]["description"]
