"""The newcomer's loop, as the README's "Trying it out" walks it, in a real headless browser:
config.example.toml (only its ports moved to free ones), `casebridge run`, an email over SMTP,
the case on the Creatio sandbox's page, a reply typed there, the reply in the mail catcher,
and its delivery state on the session page and in `casebridge sessions show`.

The operator dashboard (GET /) is another change's work and is not on this branch: this walk
does not visit it."""

from __future__ import annotations

import os
import re
import smtplib
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
import tomli_w
from deployment import free_port, wait_for
from playwright.sync_api import BrowserContext
from test_e2e_browser import CHROMIUM, browser  # noqa: F401 - the shared browser fixture

ROOT = Path(__file__).resolve().parents[2]
SUPPORT = "support@example.com"
CUSTOMER = "nora@customer.example"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)),
        reason=f"no chromium at {CHROMIUM} (apt-get install chromium; .ci/run installs it)",
    ),
]


@dataclass
class Newcomer:
    """A bridge started the way the README says, from a copy of config.example.toml."""

    root: Path
    ports: dict[str, int]
    process: subprocess.Popen[bytes]

    @property
    def bridge(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"

    @property
    def creatio(self) -> str:
        return f"http://127.0.0.1:{self.ports['creatio']}"

    @property
    def sms(self) -> str:
        return f"http://127.0.0.1:{self.ports['sms']}"

    def output(self) -> str:
        return (self.root / "run.log").read_text(errors="replace")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "casebridge.cli", *args, "--config", "casebridge.toml"],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def example_config(ports: dict[str, int]) -> str:
    """config.example.toml with only its ports changed."""
    config = tomllib.loads((ROOT / "config.example.toml").read_text())
    config["http"]["port"] = ports["http"]
    config["bridge"]["public_url"] = f"http://127.0.0.1:{ports['http']}"
    email = config["plugins"]["email"]
    email["listen_port"], email["catcher"]["port"] = ports["smtp"], ports["catcher"]
    config["plugins"]["creatio"]["sandbox_port"] = ports["creatio"]
    config["plugins"]["sms"]["sandbox_port"] = ports["sms"]
    return tomli_w.dumps(config)


@pytest.fixture(scope="module")
def newcomer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Newcomer]:
    root = tmp_path_factory.mktemp("newcomer")
    ports = {name: free_port() for name in ("http", "smtp", "catcher", "creatio", "sms")}
    (root / "casebridge.toml").write_text(example_config(ports))
    log = (root / "run.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "casebridge.cli", "run", "--config", "casebridge.toml"],
        cwd=root,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    running = Newcomer(root, ports, process)
    try:
        wait_for(
            lambda: "Open these:" in running.output() or process.poll() is not None,
            timeout=90,
            what="casebridge run to print its addresses",
        )
        assert process.poll() is None, running.output()
        yield running
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()


def send_mail(newcomer: Newcomer) -> None:
    message = EmailMessage()
    message["From"] = f"Nora Newcomer <{CUSTOMER}>"
    message["To"] = SUPPORT
    message["Subject"] = "My parcel never came"
    message["Message-ID"] = "<nora-1@customer.example>"
    message.set_content(
        "Order 5521 was due on Monday and has not arrived.\nPlease let me speak to a person.\n"
    )
    with smtplib.SMTP("127.0.0.1", newcomer.ports["smtp"], timeout=30) as smtp:
        smtp.send_message(message)


def test_the_newcomer_loop_closes(newcomer: Newcomer, browser: BrowserContext) -> None:  # noqa: F811
    # The start-up block names every address, at the ports the configuration fixed.
    out = newcomer.output()
    for expected in (
        f"{newcomer.creatio}/sandbox/cases",
        "user Supervisor, password Supervisor",
        f"{newcomer.sms}/sandbox",
        f"{newcomer.bridge}/mail",
        f"127.0.0.1:{newcomer.ports['catcher']}",
        f"127.0.0.1:{newcomer.ports['smtp']}",
        f"{newcomer.bridge}/",
    ):
        assert expected in out, (expected, out)

    send_mail(newcomer)
    page = browser.new_page()

    # The case appears on the sandbox's case list; open it.
    row = page.locator("tr", has_text="My parcel never came")

    def case_listed() -> bool:
        page.goto(f"{newcomer.creatio}/sandbox/cases")
        return row.count() > 0

    wait_for(case_listed, timeout=60, what="the case on the sandbox page")
    row.first.locator("a").click()  # the case number
    page.wait_for_url("**/sandbox/cases/*")
    case_url = page.url
    assert "Order 5521 was due on Monday" in page.content()

    # The rep replies on the case page.
    page.locator("textarea#body").fill("Your parcel is at the depot; it comes tomorrow.")
    page.get_by_role("button", name="Send reply").click()
    page.wait_for_url("**/sandbox/cases/*?notice=*")
    assert page.locator(".notice").inner_text() == "Reply added."

    # The reply is in the mail catcher, threaded on Nora's message.
    def caught() -> bool:
        page.goto(f"{newcomer.bridge}/mail")
        return page.locator("tr.mail").count() > 0

    wait_for(caught, timeout=60, what="the reply in the mail catcher")
    assert CUSTOMER in page.locator("tr.mail").first.inner_text()
    page.locator("tr.mail a").first.click()
    page.wait_for_url("**/mail/*")
    assert "Your parcel is at the depot; it comes tomorrow." in page.locator("#text").inner_text()
    thread = page.locator("#thread").inner_text()
    assert "In-Reply-To" in thread and "<nora-1@customer.example>" in thread

    # The session page, from the case's "View session" link, shows the reply as sent.
    page.goto(case_url)
    page.get_by_role("link", name=re.compile("View session", re.IGNORECASE)).first.click()
    page.wait_for_url("**/sessions/*")
    session_url = page.url

    def sent_shown() -> bool:
        page.goto(session_url)
        return page.locator("article.msg.agent .delivery").count() == 1

    wait_for(sent_shown, timeout=30, what="the reply's state on the session page")
    assert page.locator("article.msg.agent .delivery").inner_text() == "sent"

    # Its "Open the case in the CRM" link opens the case on the sandbox.
    page.get_by_role("link", name=re.compile("Open the case")).click()
    page.wait_for_url("**/sandbox/cases/*")
    assert page.url.split("?")[0] == case_url.split("?")[0]

    # The dashboard (no token set: it answers on loopback) shows the session and the
    # reply's state beside it.
    page.goto(f"{newcomer.bridge}/")
    shown_id = session_url.split("?")[0].rsplit("/", 1)[-1]
    row = page.locator(f'tr.session[data-session="{shown_id}"]')
    assert row.locator(".delivery").inner_text() == "sent"
    row.get_by_role("link").first.click()
    page.wait_for_url("**/sessions/*")
    assert page.url.split("?")[0] == session_url.split("?")[0]

    # The SMS sandbox's page answers at its fixed address.
    page.goto(f"{newcomer.sms}/sandbox")
    assert page.locator("h1").inner_text() == "SMS sandbox"
    page.close()

    # And `casebridge sessions show` says the same as the page.
    listed = newcomer.cli("sessions", "list")
    session_id = next(line.split()[0] for line in listed.stdout.splitlines() if CUSTOMER in line)
    shown = newcomer.cli("sessions", "show", session_id)
    assert shown.returncode == 0, shown.stderr
    assert "[sent]" in shown.stdout and "Your parcel is at the depot" in shown.stdout
    # The JSON API needs a token config.example.toml does not set: it says so.
    answer = httpx.get(f"{newcomer.bridge}/api/sessions/{session_id}", timeout=10)
    assert answer.status_code == 403 and "api_token" in answer.text
