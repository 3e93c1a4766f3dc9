"""The sandbox's web pages: the case list, one case with its activities, and forms for an
agent to reply or close the case, which fire the business processes like Creatio's UI.
``<prefix>/Shell/`` stands in for Creatio's Shell, so a link to a case's form page
(``/0/Shell/#Card/Case_FormPage/edit/<id>``, as the bridge builds them) opens its case page.

Pages need no login (it is a sandbox). Activity bodies are untrusted: HTML bodies are
sanitized with nh3, text bodies are escaped by Jinja's autoescape.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import nh3
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from . import seed
from .schema import is_guid, now_text

if TYPE_CHECKING:
    from .app import Sandbox

TEMPLATES = Path(__file__).parent / "templates"
MAX_REPLY_CHARS = 100_000


def render_body(activity: dict[str, Any]) -> Markup:
    """An activity's body as safe HTML: sanitized if it is HTML, escaped if it is text."""
    body = activity.get("Body") or ""
    if activity.get("IsHtmlBody"):
        return Markup(nh3.clean(body))  # noqa: S704 (nh3 has sanitized it)
    return Markup("<pre class=text>{}</pre>").format(body)


def reply_html(text: str) -> str:
    """An agent's plain-text reply as the HTML body Creatio's email editor would store."""
    paragraphs = text.replace("\r\n", "\n").strip().split("\n\n")
    return "".join("<p>" + html.escape(p).replace("\n", "<br>") + "</p>" for p in paragraphs)


def page_routes(sandbox: Sandbox) -> list[BaseRoute]:
    env = Environment(loader=FileSystemLoader(TEMPLATES),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    env.filters["body"] = render_body
    pages = _Pages(sandbox, env)
    return [
        Route("/", pages.home, methods=["GET"]),
        Route("/sandbox/cases", pages.cases, methods=["GET"]),
        Route("/sandbox/cases/{case_id}", pages.case, methods=["GET"]),
        Route("/sandbox/cases/{case_id}/reply", pages.reply, methods=["POST"]),
        Route("/sandbox/cases/{case_id}/close", pages.close, methods=["POST"]),
        # Where links to real Creatio records point (``/0/Shell/#Card/Case_FormPage/edit/<id>``).
        Route(f"{sandbox.settings.path_prefix}/Shell/", pages.shell, methods=["GET"]),
        Route(f"{sandbox.settings.path_prefix}/Shell", pages.shell, methods=["GET"]),
    ]


class _Pages:
    def __init__(self, sandbox: Sandbox, env: Environment) -> None:
        self.sandbox = sandbox
        self.env = env

    def _name(self, entity: str, row_id: str | None) -> str:
        row = self.sandbox.store.get(entity, row_id) if row_id else None
        return str(row.get("Name", "")) if row else ""

    def _render(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(self.env.get_template(template).render(**context), status)

    async def home(self, request: Request) -> Response:
        return RedirectResponse("/sandbox/cases", 302)

    async def shell(self, request: Request) -> Response:
        """Creatio's Shell: the record is named in the URL fragment, which only the browser
        sees, so a small script sends it on to the case page."""
        return self._render("shell.html")

    async def cases(self, request: Request) -> Response:
        rows = sorted(self.sandbox.store.rows("Case"), key=lambda r: r.get("CreatedOn") or "",
                      reverse=True)
        cases = [{"id": r["Id"], "number": r.get("Number"), "subject": r.get("Subject"),
                  "contact": self._name("Contact", r.get("ContactId")),
                  "status": self._name("CaseStatus", r.get("StatusId")),
                  "created": (r.get("CreatedOn") or "")[:16].replace("T", " ")} for r in rows]
        return self._render("cases.html", cases=cases, odata_root=self.sandbox.settings.odata_root)

    async def case(self, request: Request) -> Response:
        case_id = request.path_params["case_id"]
        row = self.sandbox.store.get("Case", case_id) if is_guid(case_id) else None
        if row is None:
            return self._render("missing.html", 404, case_id=case_id)
        activities = sorted(
            (a for a in self.sandbox.store.rows("Activity") if a.get("CaseId") == row["Id"]),
            key=lambda a: (a.get("CreatedOn") or "", a.get("StartDate") or ""),
        )
        status = self.sandbox.store.get("CaseStatus", row.get("StatusId") or "")
        shown = [{
            "title": a.get("Title"), "body": a,
            "type": self._name("ActivityType", a.get("TypeId")),
            "direction": self._name("EmailType", a.get("MessageTypeId")),
            "author": self._name("Contact", a.get("AuthorId") or a.get("CreatedById")),
            "sender": a.get("Sender"),
            "created": (a.get("CreatedOn") or "")[:19].replace("T", " "),
        } for a in activities]
        files = [f for f in self.sandbox.store.rows("CaseFile") if f.get("CaseId") == row["Id"]]
        return self._render(
            "case.html", case=row, activities=shown, files=files,
            contact=self._name("Contact", row.get("ContactId")),
            status_name=status.get("Name") if status else "",
            is_final=bool(status and status.get("IsFinal")),
            rest_root=self.sandbox.settings.rest_root,
            notice=request.query_params.get("notice", ""),
        )

    async def reply(self, request: Request) -> Response:
        case_id = request.path_params["case_id"]
        row = self.sandbox.store.get("Case", case_id) if is_guid(case_id) else None
        if row is None:
            return self._render("missing.html", 404, case_id=case_id)
        form = await request.form()
        text = str(form.get("body", "")).strip()
        if not text or len(text) > MAX_REPLY_CHARS:
            return self._back(row["Id"], f"A reply needs 1 to {MAX_REPLY_CHARS} characters.")
        contact = self.sandbox.store.get("Contact", row.get("ContactId") or "") or {}
        now = now_text()
        activity = {
            "Title": f"Re: {row.get('Subject') or row.get('Number')}",
            "StartDate": now, "DueDate": now, "TypeId": seed.ACTIVITY_TYPE_EMAIL,
            "ActivityCategoryId": seed.ACTIVITY_CATEGORY_EMAIL,
            "StatusId": seed.ACTIVITY_STATUS_COMPLETED, "PriorityId": seed.ACTIVITY_PRIORITY_MEDIUM,
            "MessageTypeId": seed.MESSAGE_OUTGOING, "CaseId": row["Id"],
            "ContactId": row.get("ContactId"), "OwnerId": seed.AGENT_CONTACT,
            "AuthorId": seed.AGENT_CONTACT, "Body": reply_html(text), "IsHtmlBody": True,
            "Sender": "Alex Agent <alex.agent@sandbox.test>",
            "Recepient": contact.get("Email") or "",
        }
        notice = self._write("POST", "Activity", activity)
        return self._back(row["Id"], notice or "Reply added.")

    async def close(self, request: Request) -> Response:
        case_id = request.path_params["case_id"]
        row = self.sandbox.store.get("Case", case_id) if is_guid(case_id) else None
        if row is None:
            return self._render("missing.html", 404, case_id=case_id)
        notice = self._write("PATCH", f"Case({row['Id']})", {"StatusId": seed.STATUS_CLOSED})
        return self._back(row["Id"], notice or "Case closed.")

    def _write(self, method: str, resource: str, values: dict[str, Any]) -> str | None:
        """Write as the agent through the OData engine; the error message, or None."""
        reply = self.sandbox.engine.handle(method, resource, {}, json.dumps(values).encode(),
                                           actor=seed.AGENT_CONTACT, service_root="")
        self.sandbox.store.forget_journal()
        self.sandbox.publish()
        if reply.status >= 400:
            return str(reply.body["error"]["message"])
        return None

    def _back(self, case_id: str, notice: str) -> Response:
        return RedirectResponse(f"/sandbox/cases/{case_id}?{urlencode({'notice': notice})}",
                                303)
