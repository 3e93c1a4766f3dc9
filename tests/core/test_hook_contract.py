"""Policy tests over the whole contract: every hook is typed, documented and tested."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from casebridge import hookspecs

ROOT = Path(__file__).resolve().parents[2]
HOOKS = sorted(
    name for name, fn in vars(hookspecs).items()
    if inspect.isfunction(fn) and hasattr(fn, "casebridge_spec")
)


def test_the_contract_has_the_hooks_the_architecture_names() -> None:
    assert {"ingest", "summarize", "map_fields", "create_case", "append_activity",
            "deliver_reply", "find_open_case", "read_webhook", "http_routes", "services",
            "cli_commands", "config_section"} <= set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_typed_and_has_a_docstring(hook: str) -> None:
    fn = getattr(hookspecs, hook)
    signature = inspect.signature(fn)
    assert fn.__doc__ and len(fn.__doc__.split()) >= 8, f"{hook} needs a real docstring"
    assert signature.return_annotation is not inspect.Signature.empty, f"{hook} returns?"
    for param in signature.parameters.values():
        assert param.annotation is not inspect.Parameter.empty, f"{hook}({param.name}) untyped"
        assert param.default is inspect.Parameter.empty, f"{hook}({param.name}) has a default"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented(hook: str) -> None:
    docs = (ROOT / "docs" / "plugins.md").read_text()
    assert re.search(rf"^### {hook}$", docs, re.MULTILINE), f"docs/plugins.md lacks {hook}"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_test(hook: str) -> None:
    # A hook's test is a test function named test_hook_<name>... anywhere under tests/.
    pattern = re.compile(rf"^(async )?def test_hook_{hook}(_\w*)?\(", re.MULTILINE)
    found = [p for p in (ROOT / "tests").rglob("test_*.py") if pattern.search(p.read_text())]
    assert found, f"no test_hook_{hook} under tests/"


def test_no_hook_is_firstresult() -> None:
    for hook in HOOKS:
        assert not getattr(hookspecs, hook).casebridge_spec.get("firstresult"), hook


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_documents_every_argument_and_its_result(hook: str) -> None:
    from casebridge.hookdoc import parse

    fn = getattr(hookspecs, hook)
    paragraphs, params, returns = parse(fn.__doc__ or "")
    assert paragraphs, f"{hook}: no summary"
    assert list(params) == list(inspect.signature(fn).parameters), \
        f"{hook}: document each argument, in order, with :param name:"
    assert all(params.values()) and returns, f"{hook}: empty :param: or no :returns:"


def test_the_committed_hook_reference_is_generated_from_the_docstrings() -> None:
    from casebridge.hookdoc import replace_reference

    text = (ROOT / "docs" / "plugins.md").read_text()
    assert replace_reference(text) == text, (
        "docs/plugins.md's hook reference is stale: run "
        "`python -m casebridge.hookdoc docs/plugins.md`")
