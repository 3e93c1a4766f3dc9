"""A whole casebridge deployment on loopback, as an integrator would run it: the Creatio
sandbox and the SMS sandbox provider as their own processes (`casebridge sandbox ...`),
`casebridge run` as a third, and an aiosmtpd sink standing in for the customers' mail
server. Tests talk to it only over the network."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import httpx
import tomli_w
from aiosmtpd.controller import Controller

SUPPORT = "support@example.com"
OUR_NUMBER = "+15005550006"
API_TOKEN = "e2e-api-token"
WEBHOOK_TOKEN = "e2e-webhook-token-0123456789"
SMS_TOKEN = "e2e-sms-auth-token"
ACCOUNT_SID = "AC" + "0" * 32
SUPERVISOR = "Supervisor"
OWNER_ID = "410006e1-ca4e-4502-a9ec-e54d922d2c00"  # the sandbox's Supervisor contact


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


SESSION_LINK = re.compile(r'https?://[^"\s<>]+/sessions/[^"\s<>]+')


def session_link(body: str) -> str | None:
    """The "View session" URL in an activity body (HTML or text), or None."""
    found = SESSION_LINK.search(body)
    return found.group(0).replace("&amp;", "&") if found else None


def odata_text(value: str) -> str:
    """``value`` as an OData string literal."""
    return "'" + value.replace("'", "''") + "'"


def wait_for(predicate: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class Sink:
    """The customers' mail server: keeps every message the bridge relays."""

    def __init__(self, port: int) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.controller = Controller(self, hostname="127.0.0.1", port=port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = BytesParser(policy=default_policy).parsebytes(envelope.content)
        self.messages.append(message)  # type: ignore[arg-type]
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m, (_, rcpts) in zip(self.messages, self.envelopes, strict=True)
                if address in rcpts]


@dataclass
class Deployment:
    root: Path
    http_port: int = field(default_factory=free_port)
    smtp_port: int = field(default_factory=free_port)
    creatio_port: int = field(default_factory=free_port)
    sms_port: int = field(default_factory=free_port)
    sink_port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    sink: Sink | None = None

    # -- addresses ------------------------------------------------------------------------

    @property
    def bridge_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def creatio_url(self) -> str:
        return f"http://127.0.0.1:{self.creatio_port}"

    @property
    def sms_url(self) -> str:
        return f"http://127.0.0.1:{self.sms_port}"

    @property
    def config_path(self) -> Path:
        return self.root / "casebridge.toml"

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "bridge": {"crm": "creatio", "channels": ["email", "sms"], "data_dir": "var",
                       "public_url": self.bridge_url},
            "http": {"host": "127.0.0.1", "port": self.http_port, "api_token": API_TOKEN},
            "outbox": {"poll_seconds": 0.1, "backoff_base": 0.2, "backoff_cap": 2.0,
                       "lease_seconds": 10.0},
            "handoff": {"max_customer_turns": 3},
            "fields": {"rules": [
                {"column": "PriorityId", "value": "High", "kind": "lookup",
                 "keywords": ["urgent"]},
            ]},
            "logging": {"level": "INFO", "json": True},
            "plugins": {
                "email": {
                    "listen_host": "127.0.0.1", "listen_port": self.smtp_port,
                    "support_addresses": [SUPPORT],
                    "relay": {"host": "127.0.0.1", "port": self.sink_port, "tls": "none"},
                },
                "sms": {
                    "provider": "twilio", "base_url": self.sms_url, "account_sid": ACCOUNT_SID,
                    "auth_token": SMS_TOKEN, "numbers": [OUR_NUMBER],
                },
                "creatio": {
                    "url": self.creatio_url, "auth": "login", "username": SUPERVISOR,
                    "password": SUPERVISOR, "webhook_token": WEBHOOK_TOKEN,
                    "owner_id": OWNER_ID,
                    "reconcile_interval": 2.0,
                },
            },
        }
        for section, values in self.overrides.items():
            if section == "plugins":
                for name, settings in values.items():
                    config["plugins"][name].update(settings)
            else:
                config.setdefault(section, {}).update(values)
        return config

    # -- processes ------------------------------------------------------------------------

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.root / f"{name}.log").open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(
            [sys.executable, "-m", "casebridge.cli", *args], cwd=self.root, stdout=log,
            stderr=subprocess.STDOUT, env=env)
        self.processes[name] = process
        return process

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> Deployment:
        self.root.mkdir(parents=True, exist_ok=True)
        self.sink = Sink(self.sink_port)
        self.sink.controller.start()
        webhook = f"{self.bridge_url}/webhooks/creatio/{WEBHOOK_TOKEN}"
        self._spawn("creatio", "sandbox", "creatio", "--port", str(self.creatio_port),
                    "--db", str(self.root / "creatio.sqlite"), "--webhook", webhook)
        self._spawn("sms", "sandbox", "sms", "--port", str(self.sms_port),
                    "--auth-token", SMS_TOKEN, "--account-sid", ACCOUNT_SID,
                    "--webhook", f"{self.bridge_url}/webhooks/sms/inbound")
        for url in (self.creatio_url + "/sandbox/cases", self.sms_url + "/sandbox/messages"):
            wait_for(lambda url=url: self._answers(url), what=url)
        self.start_bridge()
        return self

    def start_bridge(self) -> None:
        self.config_path.write_text(tomli_w.dumps(self.config()))
        self._spawn("bridge", "run", "--config", str(self.config_path))
        wait_for(lambda: self._answers(self.bridge_url + "/readyz"), timeout=60,
                 what="the bridge to be ready\n" + self.log("bridge")[-3000:])

    def stop_bridge(self, *, kill: bool = False) -> None:
        process = self.processes.pop("bridge")
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        process.wait(timeout=30)

    def stop(self) -> None:
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()
        if self.sink is not None:
            self.sink.controller.stop()

    @staticmethod
    def _answers(url: str) -> bool:
        try:
            return httpx.get(url, timeout=2).status_code < 500
        except httpx.HTTPError:
            return False

    # -- the customer ---------------------------------------------------------------------

    def send_email(self, message: EmailMessage) -> None:
        with smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=30) as smtp:
            smtp.send_message(message)

    def send_sms(self, sender: str, body: str, to: str = OUR_NUMBER) -> httpx.Response:
        return httpx.post(f"{self.sms_url}/sandbox/inbound", timeout=30,
                          json={"from": sender, "to": to, "body": body})

    def sms_sent(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.sms_url}/sandbox/messages", timeout=10).json()["messages"]

    # -- the rep, in Creatio --------------------------------------------------------------

    @contextlib.contextmanager
    def creatio(self) -> Iterator[httpx.Client]:
        """An OData client signed in to the Creatio sandbox as a rep."""
        with httpx.Client(base_url=self.creatio_url, timeout=30) as client:
            answer = client.post("/ServiceModel/AuthService.svc/Login",
                                 json={"UserName": SUPERVISOR, "UserPassword": SUPERVISOR},
                                 headers={"ForceUseSession": "true"})
            assert answer.json()["Code"] == 0, answer.text
            client.headers["BPMCSRF"] = client.cookies["BPMCSRF"]
            client.headers["ForceUseSession"] = "true"
            yield client

    def odata(self, entity: str, **query: str) -> list[dict[str, Any]]:
        with self.creatio() as client:
            answer = client.get(f"/0/odata/{entity}", params=query)
            answer.raise_for_status()
            return list(answer.json()["value"])

    def cases(self) -> list[dict[str, Any]]:
        return self.odata("Case", **{"$orderby": "CreatedOn"})

    def activities(self, case_id: str) -> list[dict[str, Any]]:
        return self.odata("Activity", **{"$filter": f"CaseId eq {case_id}",
                                         "$orderby": "CreatedOn"})

    def contacts(self, address: str) -> list[dict[str, Any]]:
        """Creatio contacts whose Email or MobilePhone is ``address``."""
        literal = odata_text(address)
        return self.odata("Contact",
                          **{"$filter": f"Email eq {literal} or MobilePhone eq {literal}"})

    def cases_for(self, address: str) -> list[dict[str, Any]]:
        """The cases of the contacts :meth:`contacts` finds for ``address``, oldest first."""
        literal = odata_text(address)
        return self.odata("Case", **{
            "$filter": f"Contact/Email eq {literal} or Contact/MobilePhone eq {literal}",
            "$orderby": "CreatedOn"})

    def case_files(self, case_id: str) -> list[dict[str, Any]]:
        return self.odata("CaseFile", **{"$filter": f"CaseId eq {case_id}"})

    def lookup_id(self, entity: str, name: str) -> str:
        """The Id of the ``entity`` lookup row called ``name`` (e.g. CasePriority "High")."""
        [row] = self.odata(entity, **{"$filter": f"Name eq {odata_text(name)}"})
        return str(row["Id"]).lower()

    def rep_reply(self, case_id: str, text: str) -> None:
        """A rep replies through the sandbox's case page form."""
        answer = httpx.post(f"{self.creatio_url}/sandbox/cases/{case_id}/reply",
                            data={"body": text}, timeout=30, follow_redirects=True)
        assert answer.status_code == 200, answer.text

    def close_case(self, case_id: str) -> None:
        answer = httpx.post(f"{self.creatio_url}/sandbox/cases/{case_id}/close", timeout=30,
                            follow_redirects=True)
        assert answer.status_code == 200, answer.text

    # -- the bridge -----------------------------------------------------------------------

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        return httpx.request(method, self.bridge_url + path, headers=headers, timeout=30,
                             **kwargs)

    def sessions(self, address: str = "") -> list[dict[str, str]]:
        """The bridge's sessions (``casebridge sessions list``), newest first: id, channel,
        status, case; only those of the customer ``address`` when given."""
        done = self.cli("sessions", "list", "--limit", "1000")
        assert done.returncode == 0, done.stderr
        rows = []
        for line in done.stdout.splitlines()[1:]:  # after the header row
            session_id, channel, status, _, case, *who = line.split()
            if address and address not in " ".join(who).split(", "):
                continue
            rows.append({"id": session_id, "channel": channel, "status": status, "case": case})
        return rows

    def sms_to(self, number: str) -> list[dict[str, Any]]:
        """The SMS the provider sent to ``number``, oldest first."""
        return [m for m in self.sms_sent() if m["to"] == number]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "casebridge.cli", *args, "--config", str(self.config_path)],
            cwd=self.root, capture_output=True, text=True, timeout=60)
