"""The operator's dashboard in a real headless browser (Debian's chromium via playwright), on
a whole deployment of processes on loopback: sign in, hand a session off by hand while the
CRM fails, see the job dead with its error, replay it once the CRM is back, see it done,
and follow the session's link to its page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from deployment import API_TOKEN, Deployment, wait_for
from playwright.sync_api import BrowserContext, Page, sync_playwright
from test_e2e_browser import CHROMIUM, CHROMIUM_ARGS, customer_mail

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).is_file()),
    reason=f"no chromium at {CHROMIUM} (apt-get install chromium; .ci/run installs it)",
)

# A job that fails twice is dead: the test does not wait out the real retry budget.
OVERRIDES = {
    "outbox": {"max_attempts": 2, "backoff_base": 0.2, "backoff_cap": 0.5, "jitter": 0.0},
}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    running = Deployment(tmp_path_factory.mktemp("dashboard"), overrides=OVERRIDES).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    profile = tmp_path_factory.mktemp("chromium-dashboard")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


def set_creatio_errors(deployment: Deployment, rate: float) -> None:
    answer = httpx.post(
        f"{deployment.creatio_url}/sandbox/admin/faults",
        timeout=10,
        json={"error_rate": rate, "seed": 1},
    )
    assert answer.status_code == 200, answer.text


def reload_until(page: Page, selector: str, what: str, timeout: float = 60.0) -> None:
    """Reload the dashboard until ``selector`` is on it (the page has no scripts)."""

    def shown() -> bool:
        page.reload()
        return page.locator(selector).count() > 0

    wait_for(shown, timeout=timeout, what=what)


def test_sign_in_hand_off_replay_a_dead_job_and_open_the_session(
    deployment: Deployment,
    browser: BrowserContext,
    tmp_path: Path,
) -> None:
    page = browser.new_page()
    answer = page.goto(deployment.bridge_url + "/")
    assert answer is not None and answer.status == 401
    page.locator("input#token").fill("not the token")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text() == "That token is not the API token."
    page.locator("input#token").fill(API_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(deployment.bridge_url + "/")
    assert page.locator("h1").inner_text() == "casebridge"
    checks = page.locator("#plugins tr.check td.ok")
    assert {checks.nth(i).inner_text() for i in range(checks.count())} >= {"Active"}

    # A customer writes; the assistant (the defaults) keeps the session: a hand-off button.
    sender = "dana@customer.example"
    deployment.send_email(customer_mail(sender, "Invoice 77", "Where is invoice 77?", "dana-1"))
    row = "#sessions tr.session:has-text('Invoice 77')"
    reload_until(page, row, "Dana's session on the dashboard")
    session_id = page.locator(row).get_attribute("data-session")
    assert session_id

    # The CRM fails everything: the hand-off from the dashboard dies after two attempts.
    set_creatio_errors(deployment, 1.0)
    page.locator(row).get_by_role("button", name="Hand off").click()
    assert "Hand-off of session" in page.get_by_role("status").inner_text()
    dead = "#outbox tr.job.dead:has-text('handoff')"
    reload_until(page, dead, "the hand-off job to die")
    assert page.locator(f"{dead} td.error").inner_text().strip() != ""
    job_id = page.locator(dead).get_attribute("data-job")
    page.screenshot(path=str(tmp_path / "dashboard-dead.png"), full_page=True)

    # The CRM is back: replay from the dashboard, and the job is done, the case written.
    set_creatio_errors(deployment, 0.0)
    page.locator(f"#outbox tr.job.dead[data-job='{job_id}']").get_by_role(
        "button", name="Replay"
    ).click()
    assert page.get_by_role("status").inner_text() == f"Job {job_id} queued again."
    [case] = wait_for(lambda: deployment.cases_for(sender), what="Dana's case")
    assert case["Subject"]

    def job_gone() -> bool:
        page.reload()
        return page.locator(f"#outbox tr.job[data-job='{job_id}']").count() == 0

    wait_for(job_gone, what="the replayed job to be done")
    done = deployment.cli("outbox", "list", "--state", "done", "--limit", "1000")
    assert any(line.split()[0] == job_id for line in done.stdout.splitlines()[:-1])
    handed_off = f"#sessions tr.session[data-session='{session_id}']"
    assert page.locator(handed_off).get_by_role("button", name="Hand off").count() == 0
    page.screenshot(path=str(tmp_path / "dashboard-done.png"), full_page=True)

    # The session's signed link opens its page.
    page.locator(handed_off).get_by_role("link").click()
    page.wait_for_url(f"**/sessions/{session_id}?exp=*")
    assert page.locator("h1").inner_text() == "Conversation with Erin Example"
    assert "Where is invoice 77?" in page.locator("article.msg.customer .text").inner_text()
    page.close()
