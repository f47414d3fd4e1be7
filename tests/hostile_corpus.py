"""The hostile-input corpus of test_hostile_input.py: the requests, and the odd values API.md allows.

Paths and bodies hold placeholders (SID, CID, OTHER) that the tests replace with the seeded
rows' ids. Bodies are bytes so that they can be anything, including not UTF-8 and not JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest

# Placeholders replaced, in paths and bodies, by the seeded rows' ids (OWN: the id of the path's resource).
SID, CID, OTHER, OWN = "@SID@", "@CID@", "@OTHER@", "@OWN@"
TOKEN = "@TOKEN@"
MISSING_ID = "9000000000000000000"  # a valid id that names nothing


@dataclass(frozen=True)
class Hostile:
    """One request; `expect` lists the acceptable statuses (all of them 4xx)."""

    method: str
    path: str
    body: bytes | None = None
    content_type: str | None = "application/json"
    expect: tuple[int, ...] = (422,)


def raw_json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def label(path: str) -> str:
    """A path as a readable test id: `/students/{sid}/courses`."""
    return path.replace("{}", "{id}").replace(SID, "{sid}").replace(CID, "{cid}")


# Path segments, as sent on the wire (percent-encoded); not an integer in 1..2**63-1, so a 422.
BAD_ID_SEGMENTS = {
    "sql-drop-table": quote("'; DROP TABLE students; --", safe=""),
    "sql-or-1-eq-1": quote("1 OR 1=1", safe=""),
    "sql-stacked-delete": quote("1; DELETE FROM student_courses", safe=""),
    "nul-byte": "%00",
    "digit-then-nul": "1%00",
    "backslash-x00-text": quote("\\x00", safe=""),
    "crlf-set-cookie": quote("1\r\nSet-Cookie: x=1", safe=""),
    "2-pow-64": str(2**64),
    "10-pow-400": str(10**400),
    "minus-2-pow-63-minus-1": str(-(2**63) - 1),
    "nan": "NaN",
    "infinity": "Infinity",
    "exponent-1e3": "1e3",
    "the-seeded-id-as-float": OWN + ".0",
    "hex": "0x1",
    "underscore-digits": "1_0",
    "leading-space": "%201",
    "fullwidth-digit": quote("\uff11", safe=""),
    "arabic-indic-digit": quote("\u0661", safe=""),
    "emoji": quote("\U0001f600", safe=""),
    "encoded-dot-dot": "%2e%2e",
    "60k-digits": "9" * 60_000,
}
# Segments that decode to several path segments: no route matches, any 4xx problem will do.
TRAVERSAL_SEGMENTS = {
    "traversal-encoded-slashes": "..%2f..%2fetc%2fpasswd",
    "traversal-encoded-dots-and-slashes": "%2e%2e%2f%2e%2e%2fstudents",
}
# (method, path with {} for the id, the id of the resource {} names, a valid body).
ID_SLOTS: list[tuple[str, str, str, dict[str, Any] | None]] = [
    ("GET", "/students/{}", SID, None),
    ("PATCH", "/students/{}", SID, {"name": "Eve"}),
    ("DELETE", "/students/{}", SID, None),
    ("GET", "/courses/{}", CID, None),
    ("PATCH", "/courses/{}", CID, {"title": "Evil"}),
    ("DELETE", "/courses/{}", CID, None),
    ("GET", "/students/{}/courses", SID, None),
    ("POST", "/students/{}/courses", SID, {"course_ids": [OTHER]}),
    ("PUT", "/students/{}/courses", SID, {"course_ids": []}),
    ("DELETE", "/students/{}/courses/" + CID, SID, None),
    ("DELETE", "/students/" + SID + "/courses/{}", CID, None),
    ("GET", "/courses/{}/students", CID, None),
]


def _id_body(template: dict[str, Any] | None) -> bytes | None:
    if template is None:
        return None
    return raw_json(template).replace(f'"{OTHER}"'.encode(), OTHER.encode())


def path_cases() -> list[Any]:
    cases = []
    for method, template, own, body in ID_SLOTS:
        slot = f"{method} {label(template)}"
        for name, segment in BAD_ID_SEGMENTS.items():
            case = Hostile(method, template.format(segment.replace(OWN, own)), _id_body(body))
            cases.append(pytest.param(case, id=f"{slot} {name}"))
        for name, segment in TRAVERSAL_SEGMENTS.items():
            case = Hostile(method, template.format(segment), _id_body(body), expect=(404, 405, 422))
            cases.append(pytest.param(case, id=f"{slot} {name}"))
    return cases


# Query values, as sent on the wire. `limit` must be an integer 1..500, `after` an id.
BAD_QUERY_VALUES = {
    "sql-drop-table": quote("'; DROP TABLE students; --", safe=""),
    "sql-or-1-eq-1": quote("1 OR 1=1", safe=""),
    "nul-byte": "%00",
    "digit-then-nul": "1%00",
    "2-pow-64": str(2**64),
    "10-pow-400": str(10**400),
    "minus-2-pow-63-minus-1": str(-(2**63) - 1),
    "nan": "NaN",
    "infinity": "inf",
    "float-1.0": "1.0",
    "exponent-1e2": "1e2",
    "empty": "",
    "fullwidth-digit": quote("\uff11", safe=""),
    "60k-digits": "9" * 60_000,
}
LIST_PATHS = {"students": "/students", "courses": "/courses", "course-students": f"/courses/{CID}/students"}


def query_cases() -> list[Any]:
    return [
        pytest.param(Hostile("GET", f"{path}?{param}={value}"), id=f"GET {label}?{param}={name}")
        for label, path in LIST_PATHS.items()
        for param in ("limit", "after")
        for name, value in BAD_QUERY_VALUES.items()
    ]


# Bodies: each endpoint with a JSON body, with a valid body (accepting it would change something).
BODY_ENDPOINTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "POST /students": ("POST", "/students", {"name": "Eve", "email": "eve@example.org"}),
    "PATCH /students/{sid}": ("PATCH", f"/students/{SID}", {"name": "Eve", "email": "eve@example.org"}),
    "POST /courses": ("POST", "/courses", {"code": "EVIL1", "title": "Evil"}),
    "PATCH /courses/{cid}": ("PATCH", f"/courses/{CID}", {"code": "EVIL1", "title": "Evil"}),
    "POST /students/{sid}/courses": ("POST", f"/students/{SID}/courses", {"course_ids": [OTHER]}),
    "PUT /students/{sid}/courses": ("PUT", f"/students/{SID}/courses", {"course_ids": [OTHER]}),
}
TEN_MB = 10 * 1024 * 1024
DEEP = 20_000  # levels of nesting that still fit in the 64 KiB body limit

# Whole documents that are not a valid body for any endpoint.
BAD_DOCUMENTS: dict[str, tuple[bytes, tuple[int, ...]]] = {
    "empty": (b"", (422,)),
    "json-null": (b"null", (422,)),
    "top-level-sql-string": (raw_json("'; DROP TABLE students; --"), (422,)),
    "top-level-10-pow-400": (str(10**400).encode(), (422,)),
    "nan-token": (b"NaN", (422,)),
    "form-encoded": (b"name=Eve&email=eve%40example.org", (422,)),
    "trailing-garbage": (b'{"name": "Eve"} xyz', (422,)),
    "js-comment": (b'{"name": "Eve" /* hi */}', (422,)),
    "utf-16": ('{"name": "Eve"}'.encode("utf-16"), (422,)),
    "invalid-utf-8-outside-strings": (b"\xff\xfe{}", (422,)),
    "invalid-utf-8-inside-a-string": (b'{"x": "\xff"}', (422,)),
    "100k-open-brackets": (b"[" * 100_000, (413, 422)),
    "10-mb-string": (b'{"name": "' + b"a" * TEN_MB + b'"}', (413, 422)),
    "20k-nested-arrays": (b"[" * DEEP + b"]" * DEEP, (422,)),
    "nested-objects-in-an-unknown-field": (b'{"x": ' + b'{"a": ' * 9_000 + b"1" + b"}" * 9_001, (422,)),
}
# Not-JSON content types, with a body that would be valid JSON: 415 or 422 (API.md).
NOT_JSON_CONTENT_TYPES = {
    "text-plain": "text/plain",
    "form-urlencoded": "application/x-www-form-urlencoded",
    "xml": "application/xml",
}


def body_cases() -> list[Any]:
    cases = []
    for label, (method, path, valid) in BODY_ENDPOINTS.items():
        for name, (document, expect) in BAD_DOCUMENTS.items():
            cases.append(pytest.param(Hostile(method, path, document, expect=expect), id=f"{label} {name}"))
        for name, content_type in NOT_JSON_CONTENT_TYPES.items():
            case = Hostile(method, path, _id_body(valid), content_type=content_type, expect=(415, 422))
            cases.append(pytest.param(case, id=f"{label} content-type {name}"))
    return cases


# Raw JSON values put in one text field of an otherwise valid body; none is a valid value.
BAD_TEXT_VALUES: dict[str, tuple[bytes, tuple[int, ...]]] = {
    "nul-escape-inside": (b'"Ada\\u0000Lovelace"', (422,)),
    "only-nul-escape": (b'"\\u0000"', (422,)),
    "lone-high-surrogate": (b'"\\ud800"', (422,)),
    "lone-low-surrogate": (b'"x\\udc00"', (422,)),
    "invalid-utf-8-byte": (b'"Ada\xff"', (422,)),
    "overlong-utf-8-nul": (b'"Ada\xc0\x80"', (422,)),
    "utf-8-encoded-surrogate": (b'"Ada\xed\xa0\x80"', (422,)),
    "nbsp-and-ideographic-space": (raw_json("\u00a0\u3000"), (422,)),
    "line-separators-only": (raw_json("\u2028\u2029"), (422,)),
    "tab-cr-lf-only": (raw_json(" \t\r\n"), (422,)),
    "empty": (b'""', (422,)),
    "201-emoji": (raw_json("\U0001f600" * 201), (422,)),
    "202-code-points-of-combining-marks": (raw_json("e\u0301" * 101), (422,)),
    "10-mb": (b'"' + b"a" * TEN_MB + b'"', (413, 422)),
    "2-pow-64": (str(2**64).encode(), (422,)),
    "10-pow-400": (str(10**400).encode(), (422,)),
    "1e400": (b"1e400", (422,)),
    "nan": (b"NaN", (422,)),
    "minus-infinity": (b"-Infinity", (422,)),
    "true": (b"true", (422,)),
    "null": (b"null", (422,)),
    "array": (b'["Eve"]', (422,)),
    "nosql-operator": (b'{"$ne": ""}', (422,)),
    "20k-nested-arrays": (b"[" * DEEP + b"]" * DEEP, (422,)),
}
BAD_EMAILS = {
    "nul-at-end": "ada2@example.org\x00",
    "crlf-bcc-header": "eve@example.org\r\nBcc: all@example.org",
    "sql-or-1-eq-1": "' OR 1=1 --",
    "sql-after-address": "eve@example.org'; DROP TABLE students; --",
    "255-chars": "e" * 243 + "@example.org",
    "two-at-signs": "eve@@example.org",
}
TEXT_FIELDS = {
    "POST /students": ["name", "email"],
    "PATCH /students/{sid}": ["name", "email"],
    "POST /courses": ["code", "title"],
    "PATCH /courses/{cid}": ["code", "title"],
}


def _with_token(valid: dict[str, Any], field: str, token: bytes) -> bytes:
    return raw_json({**valid, field: TOKEN}).replace(f'"{TOKEN}"'.encode(), token)


def text_field_cases() -> list[Any]:
    cases = []
    for label, fields in TEXT_FIELDS.items():
        method, path, valid = BODY_ENDPOINTS[label]
        for field in fields:
            for name, (token, expect) in BAD_TEXT_VALUES.items():
                case = Hostile(method, path, _with_token(valid, field, token), expect=expect)
                cases.append(pytest.param(case, id=f"{label} {field} {name}"))
            if field == "email":
                for name, email in BAD_EMAILS.items():
                    body = _with_token(valid, field, raw_json(email))
                    cases.append(pytest.param(Hostile(method, path, body), id=f"{label} email {name}"))
    return cases


# Raw JSON for course_ids: one bad element after a good one (nothing may be assigned), or a bad list.
BAD_COURSE_ID_ELEMENTS = {
    "2-pow-64": str(2**64),
    "2-pow-63": str(2**63),
    "10-pow-400": str(10**400),
    "minus-2-pow-63-minus-1": str(-(2**63) - 1),
    "zero": "0",
    "1e400": "1e400",
    "float-1.0": "1.0",
    "nan": "NaN",
    "infinity": "Infinity",
    "true": "true",
    "null": "null",
    "numeric-string": f'"{OTHER}"',
    "nul-string": '"\\u0000"',
    "sql-string": '"1; DELETE FROM student_courses"',
    "nested-array": f"[{OTHER}]",
    "nosql-operator": f'{{"$in": [{OTHER}]}}',
}
BAD_COURSE_ID_LISTS = {
    "sql-string": '"1); DELETE FROM student_courses; --"',
    "object": f'{{"0": {OTHER}}}',
    "1001-ids": "[" + ", ".join([OTHER] * 1001) + "]",
    "20k-nested-arrays": "[" * DEEP + "]" * DEEP,
}


def course_id_cases() -> list[Any]:
    cases = []
    for label in ("POST /students/{sid}/courses", "PUT /students/{sid}/courses"):
        method, path, _ = BODY_ENDPOINTS[label]
        for name, element in BAD_COURSE_ID_ELEMENTS.items():
            body = f'{{"course_ids": [{OTHER}, {element}]}}'.encode()
            cases.append(pytest.param(Hostile(method, path, body), id=f"{label} element {name}"))
        for name, ids in BAD_COURSE_ID_LISTS.items():
            body = f'{{"course_ids": {ids}}}'.encode()
            cases.append(pytest.param(Hostile(method, path, body), id=f"{label} list {name}"))
    return cases


# Raw JSON for a course's capacity (an integer 1..100000, or null): a valid course body otherwise.
BAD_CAPACITIES = {
    **{
        name: BAD_COURSE_ID_ELEMENTS[name] for name in ("2-pow-64", "10-pow-400", "1e400", "float-1.0", "nan")
    },
    **{name: BAD_COURSE_ID_ELEMENTS[name] for name in ("infinity", "true", "nested-array", "nosql-operator")},
    "zero": "0",
    "minus-one": "-1",
    "100001": "100001",
    "numeric-string": '"30"',
    "sql-string": '"1; UPDATE courses SET capacity = NULL"',
}


def capacity_cases() -> list[Any]:
    cases = []
    for label in ("POST /courses", "PATCH /courses/{cid}"):
        method, path, valid = BODY_ENDPOINTS[label]
        for name, value in BAD_CAPACITIES.items():
            body = _with_token(valid, "capacity", value.encode())
            cases.append(pytest.param(Hostile(method, path, body), id=f"{label} capacity {name}"))
    return cases


# Methods API.md does not list for a path: 405 with an Allow header.
WRONG_METHODS = [
    ("PUT", "/students"),
    ("DELETE", "/students"),
    ("PATCH", "/students"),
    ("PUT", f"/students/{SID}"),
    ("POST", f"/students/{SID}"),
    ("PUT", "/courses"),
    ("DELETE", "/courses"),
    ("POST", f"/courses/{CID}"),
    ("PUT", f"/courses/{CID}"),
    ("PATCH", f"/students/{SID}/courses"),
    ("DELETE", f"/students/{SID}/courses"),
    ("GET", f"/students/{SID}/courses/{CID}"),
    ("PUT", f"/students/{SID}/courses/{CID}"),
    ("POST", f"/courses/{CID}/students"),
    ("DELETE", f"/courses/{CID}/students"),
    ("POST", "/health"),
    ("DELETE", "/ready"),
    ("TRACE", "/students"),
    ("CONNECT", f"/students/{SID}"),
    ("PROPFIND", "/courses"),
]


def method_cases() -> list[Any]:
    return [
        pytest.param(Hostile(method, path, b"{}", expect=(405,)), id=f"{method} {label(path)}")
        for method, path in WRONG_METHODS
    ]


# Paths no route matches (a 404; 405 or 422 where part of one does).
ODD_PATHS = {
    "deep-path": "/students/" + "a/" * 20_000,
    "long-tail-after-a-route": f"/students/{SID}/courses/{CID}/" + "x" * 60_000,
    "schema-traversal": "/schema/..%2f..%2fpyproject.toml",
    "schema-encoded-dots": "/schema/%2e%2e/%2e%2e/etc/passwd",
    "students-traversal": "/students/%2e%2e/%2e%2e/etc/passwd",
}


def odd_path_cases() -> list[Any]:
    return [
        pytest.param(Hostile(method, path, expect=(404, 405, 422)), id=f"{method} {name}")
        for name, path in ODD_PATHS.items()
        for method in ("GET", "DELETE")
    ]


HOSTILE = [
    *path_cases(),
    *query_cases(),
    *body_cases(),
    *text_field_cases(),
    *course_id_cases(),
    *capacity_cases(),
    *method_cases(),
    *odd_path_cases(),
]


# Header values that try to smuggle a header into the answer or a line into the log.
HOSTILE_REQUEST_IDS = {
    "crlf-set-cookie": "abc\r\nSet-Cookie: session=evil",
    "lf-extra-header": "abc\nX-Injected: 1",
    "nul-byte": "abc\x00def",
    "json-log-breaker": 'abc", "status": 200, "x": "',
    "129-chars": "a" * 129,
}


# Odd text that API.md allows: stored and answered exactly. (U+200B is not Unicode White_Space,
# so a name of only a zero-width space is not "blank" by API.md's rule.)
ODD_VALID_TEXT = {
    "sql-drop-table": "'; DROP TABLE students; --",
    "sql-or-1-eq-1": "1 OR 1=1",
    "backslash-x00-text": "\\x00",
    "printf-and-format-specs": "%s%n{0}%(x)s",
    "html-script": "<script>alert(1)</script>",
    "template-syntax": "{{7*7}}${7*7}",
    "emoji": "Ada \U0001f600",
    "zwj-family-emoji": "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466",
    "combining-marks": "Ade\u0301le\u0300",
    "zalgo": "Z\u0351\u0352\u0353a\u0354\u0355\u0356l\u0357\u0358g\u0359o",
    "rtl-override": "\u202eAda\u202c",
    "zero-width-inside": "A\u200bd\u200da",
    "only-a-zero-width-space": "\u200b",
    "bom-inside": "\ufeffAda",
    "arabic-rtl": "\u0645\u0631\u062d\u0628\u0627",
    "max-code-point": "\U0010ffff",
    "line-separator-inside": "Ada\u2028Lovelace",
    "control-char-inside": "A\u0001da",
    "200-emoji": "\U0001f600" * 200,
    "200-code-points-of-combining-marks": "e\u0301" * 100,
}
ODD_VALID_EMAILS = {
    "apostrophe": "o'brien@example.org",
    "sql-comment-local-part": "'--@example.org",
    "plus-tag": "eve+tag@example.org",
    "non-ascii": "\u00fcn\u00efc\u00f8d\u00e9@ex\u00e4mple.org",
}


def valid_text_cases() -> list[Any]:
    cases = []
    for resource, field, limit in [
        ("students", "name", 200),
        ("courses", "title", 200),
        ("courses", "code", 32),
    ]:
        for name, value in ODD_VALID_TEXT.items():
            if len(value) <= limit:
                cases.append(pytest.param(resource, field, value, id=f"{resource} {field} {name}"))
    for name, email in ODD_VALID_EMAILS.items():
        cases.append(pytest.param("students", "email", email, id=f"students email {name}"))
    return cases


NEW_ROWS = {
    "students": {"name": "Eve", "email": "eve@example.org"},
    "courses": {"code": "EVIL1", "title": "Evil"},
}
