"""A field rule naming a column Creatio does not have, through real processes on loopback:
``casebridge check`` names it, and a handoff still creates the case, without that field and
with a note saying which field was left out and why."""

from __future__ import annotations

from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from deployment import SUPPORT, Deployment, wait_for

# "ProductName" is not a Case column (a typo, or a column of another Creatio package).
OVERRIDES = {
    "fields": {
        "rules": [
            {"column": "ProductName", "value": "Printer X200", "keywords": ["printer"]},
            {"column": "PriorityId", "value": "High", "kind": "lookup", "keywords": ["urgent"]},
        ]
    },
}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    running = Deployment(tmp_path_factory.mktemp("fields"), overrides=OVERRIDES).start()
    try:
        yield running
    finally:
        running.stop()


def test_check_names_the_column_creatio_does_not_have(deployment: Deployment) -> None:
    done = deployment.cli("check")
    assert done.returncode == 1, done.stdout + done.stderr
    assert (
        "creatio: FAILED: fields.rules[0]: Creatio's Case has no column 'ProductName'\n"
        in done.stdout
    ), done.stdout
    # The good rule is not reported.
    assert "PriorityId" not in done.stdout, done.stdout


def test_a_misnamed_column_does_not_cost_the_handoff(deployment: Deployment) -> None:
    sender = "pia@customer.example"
    message = EmailMessage()
    message["From"] = f"Pia Example <{sender}>"
    message["To"] = SUPPORT
    message["Subject"] = "Printer jams"
    message["Message-ID"] = "<pia-1@customer.example>"
    message.set_content("My printer jams on every page. This is urgent: can I speak to a person?\n")
    deployment.send_email(message)

    [case] = wait_for(lambda: deployment.cases_for(sender), timeout=60, what="Pia's case")
    symptoms = case["Symptoms"]
    assert "My printer jams on every page." in symptoms
    # The field Creatio refused is named, with why; the others are still written.
    assert "Fields left empty:\n- ProductName: " in symptoms, symptoms
    assert "The property 'ProductName' does not exist" in symptoms, symptoms
    assert "Printer X200" in symptoms
    assert case["PriorityId"].lower() == deployment.lookup_id("CasePriority", "High")
    [activity] = wait_for(lambda: deployment.activities(case["Id"]), what="the activity")
    assert "My printer jams on every page." in activity["Body"]
