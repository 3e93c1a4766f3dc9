"""AuthService login with cookies and BPMCSRF, OAuth client credentials, and 401s."""

from __future__ import annotations

from conftest import RunningSandbox, StartSandbox

LOGIN = "/ServiceModel/AuthService.svc/Login"


def test_login_answers_code_0_and_sets_creatio_cookies(sandbox: RunningSandbox) -> None:
    with sandbox.client() as client:
        answer = client.post(LOGIN, json={"UserName": "Supervisor", "UserPassword": "Supervisor"})
        assert answer.status_code == 200
        assert answer.json() == {"Code": 0, "Message": "", "Exception": None,
                                 "PasswordChangeUrl": None, "RedirectUrl": None}
        for name in (".ASPXAUTH", "BPMLOADER", "BPMCSRF", "UserName", "BPMSESSIONID"):
            assert client.cookies.get(name), name
        assert client.cookies["UserName"] == "Supervisor"


def test_wrong_password_is_http_200_with_code_1(sandbox: RunningSandbox) -> None:
    with sandbox.client() as client:
        answer = client.post(LOGIN, json={"UserName": "Supervisor", "UserPassword": "nope"})
        assert answer.status_code == 200
        body = answer.json()
        assert body["Code"] == 1 and body["Message"]
        assert ".ASPXAUTH" not in client.cookies


def test_malformed_login_body_is_refused(sandbox: RunningSandbox) -> None:
    with sandbox.client() as client:
        answer = client.post(LOGIN, content=b"not json")
        assert answer.status_code == 400 and answer.json()["Code"] == 1


def test_requests_without_credentials_get_401(sandbox: RunningSandbox) -> None:
    with sandbox.client() as client:
        assert client.get("/0/odata/Case").status_code == 401
        answer = client.post("/0/odata/Case", json={"Subject": "x"})
        assert answer.status_code == 401
        assert "error" in answer.json()


def test_writes_need_the_bpmcsrf_header_reads_do_not(sandbox: RunningSandbox) -> None:
    client = sandbox.login()
    csrf = client.headers.pop("BPMCSRF")
    assert client.get("/0/odata/CaseStatus").status_code == 200
    assert client.post("/0/odata/Case", json={"Subject": "no csrf"}).status_code == 401
    wrong = client.post("/0/odata/Case", json={"Subject": "bad csrf"},
                        headers={"BPMCSRF": csrf + "x"})
    assert wrong.status_code == 401
    right = client.post("/0/odata/Case", json={"Subject": "ok"}, headers={"BPMCSRF": csrf})
    assert right.status_code == 201
    client.close()


def test_stale_bpmcsrf_after_a_new_login_is_refused(sandbox: RunningSandbox) -> None:
    client = sandbox.login()
    stale = client.headers["BPMCSRF"]
    client.post(LOGIN, json={"UserName": "Supervisor", "UserPassword": "Supervisor"})
    assert client.cookies["BPMCSRF"] != stale
    assert client.post("/0/odata/Case", json={"Subject": "x"}).status_code == 401
    client.headers["BPMCSRF"] = client.cookies["BPMCSRF"]
    assert client.post("/0/odata/Case", json={"Subject": "x"}).status_code == 201
    client.close()


def test_logout_ends_the_session(sandbox: RunningSandbox) -> None:
    client = sandbox.login()
    cookie = client.cookies[".ASPXAUTH"]
    assert client.post("/ServiceModel/AuthService.svc/Logout").status_code == 200
    client.cookies.set(".ASPXAUTH", cookie)
    assert client.get("/0/odata/Case").status_code == 401
    client.close()


def test_oauth_client_credentials_token_works_without_bpmcsrf(sandbox: RunningSandbox) -> None:
    with sandbox.client() as client:
        answer = client.post("/connect/token", data={
            "client_id": "casebridge-sandbox", "client_secret": "sandbox-secret",
            "grant_type": "client_credentials"})
        assert answer.status_code == 200
        body = answer.json()
        assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
        headers = {"Authorization": f"Bearer {body['access_token']}"}
        created = client.post("/0/odata/Case", json={"Subject": "via token"}, headers=headers)
        assert created.status_code == 201
        assert client.get("/0/odata/Case", headers={"Authorization": "Bearer forged"}
                          ).status_code == 401


def test_bad_oauth_client_is_invalid_client(sandbox: RunningSandbox) -> None:
    with sandbox.client() as client:
        answer = client.post("/connect/token", data={
            "client_id": "casebridge-sandbox", "client_secret": "wrong",
            "grant_type": "client_credentials"})
        assert answer.status_code == 400 and answer.json() == {"error": "invalid_client"}
        answer = client.post("/connect/token", data={
            "client_id": "casebridge-sandbox", "client_secret": "sandbox-secret",
            "grant_type": "password"})
        assert answer.status_code == 400


def test_token_lifetime_and_paths_are_configurable(start_sandbox: StartSandbox) -> None:
    running = start_sandbox(token_lifetime_s=120, token_path="/identity/connect/token",
                            path_prefix="")
    with running.client() as client:
        body = client.post("/identity/connect/token", data={
            "client_id": "casebridge-sandbox", "client_secret": "sandbox-secret",
            "grant_type": "client_credentials"}).json()
        assert body["expires_in"] == 120
        headers = {"Authorization": f"Bearer {body['access_token']}"}
        assert client.get("/odata/CaseStatus", headers=headers).status_code == 200
        assert client.get("/0/odata/CaseStatus", headers=headers).status_code == 404


def test_expired_token_is_401(sandbox: RunningSandbox) -> None:
    client = sandbox.bearer()
    assert client.get("/0/odata/Case").status_code == 200
    clock = sandbox.sandbox.auth.clock
    sandbox.sandbox.auth.clock = lambda: clock() + 3601
    try:
        assert client.get("/0/odata/Case").status_code == 401
    finally:
        sandbox.sandbox.auth.clock = clock
        client.close()
