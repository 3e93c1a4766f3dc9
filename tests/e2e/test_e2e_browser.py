"""The pages people open, in a real headless browser (Debian's chromium driven by
playwright, never a downloaded browser): the session page a rep opens from the case, on a
phone-sized screen, and the Creatio sandbox's case page where a rep types a reply."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from deployment import SUPPORT, Deployment, session_link, wait_for
from playwright.sync_api import BrowserContext, Page, sync_playwright

CHROMIUM = os.environ.get("CASEBRIDGE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# No network beyond loopback, no first-run work, nothing kept between runs.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]
PHONE = {"width": 390, "height": 844}

pytestmark = pytest.mark.skipif(
    not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)),
    reason=f"no chromium at {CHROMIUM} (apt-get install chromium; .ci/run installs it)",
)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
        try:
            yield context
        finally:
            context.close()


def customer_mail(sender: str, subject: str, body: str, msg_id: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Erin Example <{sender}>"
    message["To"] = SUPPORT
    message["Subject"] = subject
    message["Message-ID"] = f"<{msg_id}@customer.example>"
    message.set_content(body)
    return message


def fits_the_screen(page: Page) -> bool:
    """No sideways scrolling on the phone: a mobile viewport widens itself to content that
    overflows, so the page is measured against the phone's width, not the window's."""
    return int(page.evaluate("document.documentElement.scrollWidth")) <= PHONE["width"]


def test_session_page_and_case_page_in_a_real_browser(
    deployment: Deployment, browser: BrowserContext, tmp_path: Path,
) -> None:
    sender = "erin@customer.example"
    deployment.send_email(customer_mail(
        sender, "Order <1234> & delivery",
        "My order <1234> arrived damaged & the box was open.\n"
        "Order-reference-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-abcdefghijklmnop\n"
        "Please let me speak to a person.\n", "erin-1"))
    [case] = wait_for(lambda: deployment.cases_for(sender), what="Erin's case")
    [activity] = wait_for(lambda: deployment.activities(case["Id"]), what="the activity")
    link = session_link(activity["Body"])
    assert link is not None

    page = browser.new_page()
    answer = page.goto(link)
    assert answer is not None and answer.status == 200
    assert page.locator("h1").inner_text() == "Conversation with Erin Example"
    customer = page.locator("article.msg.customer .text")
    assert customer.count() == 1
    shown = customer.inner_text()
    # Rendered as text, not markup: the angle brackets and ampersand are what Erin wrote.
    assert "My order <1234> arrived damaged & the box was open." in shown
    assert "Please let me speak to a person." in shown
    assert fits_the_screen(page)
    page.screenshot(path=str(tmp_path / "session.png"), full_page=True)

    # The rep, on the sandbox's case page: type a reply and send it.
    page.goto(f"{deployment.creatio_url}/sandbox/cases/{case['Id']}")
    assert fits_the_screen(page)
    page.locator("textarea#body").fill("We are sending a new one today.\n\nSorry about that.")
    page.get_by_role("button", name="Send reply").click()
    page.wait_for_url("**/sandbox/cases/*?notice=*")
    assert page.locator(".notice").inner_text() == "Reply added."

    [reply] = wait_for(lambda: deployment.sink.to(sender), what="the reply in Erin's inbox")
    assert reply["In-Reply-To"] == "<erin-1@customer.example>"
    body = reply.get_body(("plain",)).get_content()
    assert "We are sending a new one today." in body and "Sorry about that." in body

    # Back on the session page the rep's reply is part of the transcript.
    def agent_shown() -> bool:
        page.goto(link)
        return page.locator("article.msg.agent .text").count() == 1
    wait_for(agent_shown, what="the agent's message on the session page")
    assert "We are sending a new one today." in page.locator(
        "article.msg.agent .text").inner_text()
    assert fits_the_screen(page)
    page.close()
