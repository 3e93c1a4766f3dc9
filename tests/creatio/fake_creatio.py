"""An in-memory Creatio for httpx.MockTransport, behaving as shared/CREATIO.md describes:
login cookies + BPMCSRF or OAuth bearer tokens, OData 4 shapes and status codes, error
bodies, $filter/$select/$orderby/$top/$skip, $batch, FileApiService. ``faults`` script
failures: each is consulted in order and used once."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote

import httpx
from creatio_filters import parse

BASE = "https://acme.creatio.test"
IDENTITY = "https://acme-is.creatio.test"
USER, PASSWORD = "integration", "pa55-w0rd-s3cret"
CLIENT_ID, CLIENT_SECRET = "casebridge-app", "cl1ent-s3cret-value"

STATUSES = [
    ("ae5f2f10-f46b-1410-fd9a-0050ba5d6c38", "New", False, False),
    ("7e9f1204-f46b-1410-fb9a-0050ba5d6c38", "In progress", False, False),
    ("ae7f411e-f46b-1410-009b-0050ba5d6c38", "Resolved", False, True),
    ("3e7f420c-f46b-1410-fc9a-0050ba5d6c38", "Closed", True, False),
    ("6e5f4218-f46b-1410-fe9a-0050ba5d6c38", "Canceled", True, False),
]
SMS_ORIGIN = "11111111-2222-4333-8444-555555555555"


@dataclass
class Fault:
    """``match(request)`` selects the request; ``answer`` replaces the server's answer, or
    ``after`` raises once the server has processed the request (a lost answer)."""

    match: Callable[[httpx.Request], bool]
    answer: httpx.Response | Exception | Callable[[httpx.Request], httpx.Response] | None = None
    after: Exception | None = None
    times: int = 1


@dataclass
class FakeCreatio:
    mode: str = "login"
    token_lifetime: int = 3600
    tables: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    log: list[httpx.Request] = field(default_factory=list)
    sessions: set[str] = field(default_factory=set)
    tokens: set[str] = field(default_factory=set)
    logins: int = 0
    token_requests: int = 0
    uploads: dict[str, bytes] = field(default_factory=dict)
    honour_ids: bool = True
    _numbers: Any = field(default_factory=lambda: itertools.count(5250))

    def __post_init__(self) -> None:
        self.tables.setdefault(
            "CaseStatus",
            {
                sid: {"Id": sid, "Name": n, "IsFinal": f, "IsResolved": r}
                for sid, n, f, r in STATUSES
            },
        )
        origins = {"Email": "7f9e1f1e-f46b-1410-3492-0050ba5d6c38", "SMS": SMS_ORIGIN}
        self.tables.setdefault("CaseOrigin", {i: {"Id": i, "Name": n} for n, i in origins.items()})
        self.tables.setdefault(
            "CasePriority",
            {
                "d9bd322c-f46b-1410-ee8c-0050ba5d6c38": {
                    "Id": "d9bd322c-f46b-1410-ee8c-0050ba5d6c38",
                    "Name": "Medium",
                },
                "aaaaaaaa-f46b-1410-ee8c-0050ba5d6c38": {
                    "Id": "aaaaaaaa-f46b-1410-ee8c-0050ba5d6c38",
                    "Name": "High",
                },
            },
        )
        for name in ("Case", "Activity", "Contact", "ContactCommunication", "CaseFile"):
            self.tables.setdefault(name, {})

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def requests_to(self, method: str, path_part: str) -> list[httpx.Request]:
        return [r for r in self.log if r.method == method and path_part in r.url.path]

    # -- dispatch --------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.log.append(request)
        for fault in list(self.faults):
            if fault.match(request):
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                if fault.answer is not None:
                    if isinstance(fault.answer, Exception):
                        raise fault.answer
                    if callable(fault.answer):
                        return fault.answer(request)
                    return fault.answer
                self.serve(request)
                assert fault.after is not None
                raise fault.after
        return self.serve(request)

    def serve(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.host == "acme-is.creatio.test" and url.path == "/connect/token":
            return self.token(request)
        if url.path == "/ServiceModel/AuthService.svc/Login":
            return self.login(request)
        if not self.authorised(request):
            return httpx.Response(401, text="")
        if url.path == "/0/rest/FileApiService/UploadFile":
            return self.upload(request)
        if url.path.startswith("/0/odata/"):
            rest = unquote(url.path[len("/0/odata/") :])
            if rest == "$batch":
                return self.batch(request)
            query = {k: v[0] for k, v in parse_qs(url.query.decode()).items()}
            body = json.loads(request.content) if request.content else None
            return self.odata(request.method, rest, query, body)
        return httpx.Response(404, html="<html><body>Not found</body></html>")

    # -- auth ------------------------------------------------------------------------------

    def login(self, request: httpx.Request) -> httpx.Response:
        self.logins += 1
        body = json.loads(request.content)
        assert request.headers.get("ForceUseSession") == "true"
        if body != {"UserName": USER, "UserPassword": PASSWORD}:
            return httpx.Response(
                200, json={"Code": 1, "Message": "Invalid login or password", "Exception": None}
            )
        session = f"sess{self.logins}"
        self.sessions.add(session)
        headers = [
            ("Set-Cookie", f".ASPXAUTH={session}; path=/; HttpOnly"),
            ("Set-Cookie", f"BPMCSRF=csrf{session}; path=/"),
            ("Set-Cookie", "BPMLOADER=loader; path=/; HttpOnly"),
            ("Set-Cookie", f"UserName={USER}; path=/"),
        ]
        return httpx.Response(
            200, headers=headers, json={"Code": 0, "Message": "", "Exception": None}
        )

    def token(self, request: httpx.Request) -> httpx.Response:
        self.token_requests += 1
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        if form != {
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "grant_type": "client_credentials",
        }:
            return httpx.Response(400, json={"error": "invalid_client"})
        token = f"tok{self.token_requests}"
        self.tokens.add(token)
        return httpx.Response(
            200,
            json={"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"},
        )

    def authorised(self, request: httpx.Request) -> bool:
        if self.mode == "oauth":
            value = request.headers.get("Authorization", "")
            return value.startswith("Bearer ") and value[7:] in self.tokens
        cookies = dict(
            part.strip().split("=", 1)
            for part in request.headers.get("Cookie", "").split(";")
            if "=" in part
        )
        session = cookies.get(".ASPXAUTH")
        return (
            session in self.sessions
            and request.headers.get("BPMCSRF") == cookies.get("BPMCSRF") == f"csrf{session}"
            and request.headers.get("ForceUseSession") == "true"
        )

    def expire_sessions(self) -> None:
        self.sessions.clear()
        self.tokens.clear()

    # -- OData -----------------------------------------------------------------------------

    def odata(self, method: str, rest: str, query: dict[str, str], body: Any) -> httpx.Response:
        entity, _, key = rest.partition("(")
        key = key.rstrip(")")
        table = self.tables.get(entity)
        if table is None:
            return error(404, f"Entity set '{entity}' not found")
        if method == "GET" and not key:
            rows = [r for r in table.values() if matches(r, query.get("$filter"))]
            if "$orderby" in query:
                name, _, direction = query["$orderby"].partition(" ")
                rows.sort(key=lambda r: str(r.get(name) or ""), reverse=direction == "desc")
            skip = int(query.get("$skip", 0))
            rows = rows[skip:]
            if "$top" in query:
                rows = rows[: int(query["$top"])]
            if "$select" in query:
                names = query["$select"].split(",")
                rows = [{n: r.get(n) for n in names} for r in rows]
            return httpx.Response(200, json={"@odata.context": "ctx", "value": rows})
        if method == "GET":
            row = table.get(key)
            if row is None:
                return httpx.Response(404)
            if "$select" in query:
                row = {n: row.get(n) for n in query["$select"].split(",")}
            return httpx.Response(200, json=row)
        if method == "POST":
            row = dict(body)
            if not self.honour_ids or "Id" not in row:
                row["Id"] = str(uuid.uuid4())
            if row["Id"] in table:
                return error(
                    500,
                    "An error occurred",
                    "Violation of PRIMARY KEY constraint. Cannot insert duplicate key.",
                )
            if entity == "Activity" and not row.get("Title"):
                return error(400, "Column 'Title' is required")
            row["CreatedOn"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
            if entity == "Case":
                row["Number"] = f"SR{next(self._numbers):08d}"
            table[row["Id"]] = row
            return httpx.Response(201, json=row)
        if method == "PATCH":
            if key not in table:
                return httpx.Response(404)
            table[key].update(body)
            return httpx.Response(204)
        if method == "DELETE":
            if table.pop(key, None) is None:
                return httpx.Response(404)
            return httpx.Response(204)
        return error(405, "Method not allowed")

    def batch(self, request: httpx.Request) -> httpx.Response:
        payload = json.loads(request.content)
        go_on = "continue-on-error" in request.headers.get("Prefer", "")
        assert len(payload["requests"]) <= 100, "more than 100 requests in one $batch"
        responses = []
        for item in payload["requests"]:
            path = item["url"]
            target, _, qs = path.partition("?")
            query = {k: v[0] for k, v in parse_qs(qs).items()}
            answer = self.odata(item["method"], target, query, item.get("body"))
            responses.append(
                {
                    "id": item["id"],
                    "status": answer.status_code,
                    "headers": {},
                    "body": json.loads(answer.content) if answer.content else None,
                }
            )
            if answer.status_code >= 400 and not go_on:
                break
        return httpx.Response(200, json={"responses": responses})

    def upload(self, request: httpx.Request) -> httpx.Response:
        query = {k: v[0] for k, v in parse_qs(request.url.query.decode()).items()}
        size = int(query["totalFileLength"])
        assert request.headers["Content-Range"] == f"bytes 0-{size - 1}/{size}"
        self.uploads[query["fileId"]] = request.content
        return httpx.Response(200, json={"success": True})


def error(status: int, message: str, inner: str = "") -> httpx.Response:
    body: dict[str, Any] = {"error": {"code": "", "message": message}}
    if inner:
        body["error"]["innererror"] = {
            "message": message,
            "internalexception": {"message": inner},
        }
    return httpx.Response(status, json=body)


def matches(row: dict[str, Any], text: str | None) -> bool:
    return True if not text else evaluate(parse(text), row)


def evaluate(tree: Any, row: dict[str, Any]) -> bool:
    kind = tree[0]
    if kind == "and":
        return all(evaluate(t, row) for t in tree[1])
    if kind == "or":
        return any(evaluate(t, row) for t in tree[1])
    if kind == "not":
        return not evaluate(tree[1], row)
    if kind == "fn":
        _, name, path, arg = tree
        value = str(row.get(path) or "")
        return {
            "contains": arg in value,
            "startswith": value.startswith(arg),
            "endswith": value.endswith(arg),
        }[name]
    _, path, op, want = tree
    have = row.get(path.replace("/", ""))
    if isinstance(want, tuple):
        want = want[1]
        have = str(have).lower() if have else have
    if op == "eq":
        return have == want
    if op == "ne":
        return have != want
    if have is None or want is None:
        return False
    return {"gt": have > want, "ge": have >= want, "lt": have < want, "le": have <= want}[op]
