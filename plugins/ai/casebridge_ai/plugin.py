"""The AI plugin: assistant answers and handoffs, case summaries and AI-filled fields from any
OpenAI-compatible chat-completions endpoint.

Every hook fails towards a human: an unreachable or unusable model hands the session off
(``assistant_turn``), lets the default extractive summary serve (``summarize`` returns None)
or fills no field (``map_fields`` returns ``{}``), and logs why.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from casebridge.plugin import (
    AssistantTurn,
    Author,
    BackoffPolicy,
    CheckResult,
    ConfigError,
    ConfigSection,
    FieldValue,
    HandoffDecision,
    Message,
    PluginContext,
    Session,
    Summary,
    customer_text,
    hookimpl,
)
from prometheus_client import Counter

from .client import AiUnavailable, ChatClient
from .decisions import Output, decide_turn, read_fields, read_output, read_summary
from .prompts import (
    ASSISTANT_SCHEMA,
    ASSISTANT_TOOL,
    FIELDS_TOOL,
    SUMMARY_SCHEMA,
    SUMMARY_TOOL,
    assistant_messages,
    fields_messages,
    fields_schema,
    request_body,
    summary_messages,
)
from .settings import AiSettings
from .usage import Usage, add_usage

__all__ = ["AiPlugin", "read_knowledge"]

log = logging.getLogger("casebridge.ai")


def read_knowledge(base_dir: Path, names: Sequence[str], limit: int) -> str:
    """The knowledge files (relative to ``base_dir``), each under a ``## name`` heading, cut at
    ``limit`` characters in all. Raises ConfigError naming a file that cannot be read."""
    parts = []
    for name in names:
        path = base_dir / name
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            detail = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigError(
                f"[plugins.ai] knowledge_files: cannot read {path}: {detail}"
            ) from None
        parts.append(f"## {name}\n{text.strip()}")
    knowledge = "\n\n".join(parts)
    if len(knowledge) > limit:
        log.warning("knowledge files cut from %d to %d characters (knowledge_max_chars)",
                    len(knowledge), limit)
        knowledge = knowledge[:limit]
    return knowledge


class AiPlugin:
    """Talks to ``[plugins.ai] base_url``; see docs/ai.md."""

    # The entry point's name until ``configure`` gives the TOML's.
    name = "ai"

    def __init__(self) -> None:
        self.context: PluginContext | None = None
        self.client: ChatClient | None = None
        self.tokens: Counter | None = None
        self.knowledge = ""

    # -- set-up ---------------------------------------------------------------------------

    @hookimpl
    def config_section(self) -> ConfigSection:
        return ConfigSection(self.name, AiSettings)

    @hookimpl
    def configure(self, context: PluginContext) -> None:
        settings: AiSettings = context.settings
        self.context, self.name = context, context.name
        # The plugin's own metric, on the runner's registry.
        self.tokens = Counter("casebridge_ai_tokens", "Tokens spent on AI calls, by kind.",
                              ("kind",), registry=context.metrics)
        self.knowledge = read_knowledge(context.base_dir, settings.knowledge_files,
                                        settings.knowledge_max_chars)
        self.client = ChatClient(
            settings.base_url, settings.api_key, timeout=settings.timeout,
            max_concurrency=settings.max_concurrency,
            backoff=BackoffPolicy(base=settings.backoff_base, factor=2.0,
                                  cap=settings.backoff_cap, jitter=0.5,
                                  max_attempts=settings.retries + 1),
        )

    def _ready(self) -> tuple[PluginContext, AiSettings, ChatClient]:
        """The context, settings and client ``configure`` made; the one guard against use
        before it."""
        if self.context is None or self.client is None:
            raise RuntimeError(f"the {self.name} plugin was used before configure")
        return self.context, self.context.settings, self.client

    @hookimpl
    async def check(self) -> CheckResult:
        _, settings, client = self._ready()
        try:
            models = await client.models()
        except AiUnavailable as exc:
            if exc.status not in (404, 405):
                return CheckResult(self.name, False, str(exc))
            # No model list on this server: a one-token completion proves the model answers.
            return await self._check_by_completion()
        if settings.model not in models:
            listed = ", ".join(models[:10]) or "none"
            return CheckResult(self.name, False, f"{client.base_url} does not serve the model "
                                            f"{settings.model!r} (it lists: {listed})")
        return CheckResult(self.name, True)

    async def _check_by_completion(self) -> CheckResult:
        _, settings, client = self._ready()
        try:
            completion = await client.complete({
                "model": settings.model, "max_tokens": 1,
                "messages": [{"role": "user", "content": "Say OK."}],
            })
        except AiUnavailable as exc:
            return CheckResult(self.name, False, str(exc))
        if completion.usage.total_tokens:
            self._count_tokens("check", completion.usage)
        return CheckResult(self.name, True)

    # -- calls ----------------------------------------------------------------------------

    async def _call(
        self, kind: str, session: Session, messages: list[dict[str, str]], tool: str,
        schema: Mapping[str, Any],
    ) -> Output:
        context, settings, client = self._ready()
        body = request_body(settings.model, messages, tool=tool, schema=schema,
                            use_tools=settings.use_tools, temperature=settings.temperature,
                            max_tokens=settings.max_tokens)
        # Only the assistant's answer has a customer waiting for it: it alone is retried
        # here; a summary or fields call that fails leaves the defaults to serve.
        retries = settings.retries if kind == "assistant" else 0
        completion = await client.complete(body, retries=retries)
        await self._record_usage(context, kind, session.id, completion.usage)
        output = read_output(completion.message, tool)
        if output.value is None and completion.finish_reason == "length":
            return Output(None, f"{output.problem} (cut off at max_tokens={settings.max_tokens})")
        return output

    def _count_tokens(self, kind: str, usage: Usage) -> None:
        if usage.total_tokens and self.tokens is not None:
            self.tokens.labels(kind=kind).inc(usage.total_tokens)

    async def _record_usage(self, context: PluginContext, kind: str, session_id: str,
                            usage: Usage) -> None:
        self._count_tokens(kind, usage)
        key = f"usage:{session_id}"
        # Compare-and-swap: two jobs of one session may finish calls at the same time.
        for _ in range(20):
            current = await context.state.get(key)
            if await context.state.compare_and_put(key, current,
                                                   add_usage(current, kind, usage)):
                return
        log.warning("token usage of one %s call not recorded: the record kept changing", kind)

    async def session_usage(self, session_id: str) -> dict[str, Any]:
        """The session's token usage so far (see :func:`casebridge_ai.usage.add_usage`)."""
        context, _, _ = self._ready()
        return await context.state.get(f"usage:{session_id}") or {}

    # -- transforms -----------------------------------------------------------------------

    @hookimpl
    async def assistant_turn(
        self, session: Session, transcript: Sequence[Message]
    ) -> AssistantTurn | None:
        _, settings, _ = self._ready()
        if not any(m.author is Author.CUSTOMER for m in transcript):
            return None
        messages = assistant_messages(settings.system_prompt, self.knowledge, transcript,
                                      history=settings.history_messages,
                                      answer_max_chars=settings.answer_max_chars,
                                      subject=session.subject)
        # An unreachable model raises AiUnavailable: the core hands the session off and names
        # the error on the case (a customer is never left without a human).
        output = await self._call("assistant", session, messages, ASSISTANT_TOOL,
                                  ASSISTANT_SCHEMA)
        if output.value is None:
            log.warning("assistant output unusable, handing off: %s", output.problem)
        turn = decide_turn(output, settings.answer_max_chars)
        if turn.handoff is not None:
            log.info("assistant hands off", extra={"reason": customer_text(turn.handoff.reason)})
        else:
            log.info("assistant answered", extra={"answer": customer_text(turn.answer)})
        return turn

    @hookimpl
    async def summarize(
        self, session: Session, transcript: Sequence[Message], decision: HandoffDecision
    ) -> Summary | None:
        _, settings, _ = self._ready()
        messages = summary_messages(session, transcript, decision, language=settings.language,
                                    max_chars=settings.summary_max_chars)
        # Unavailable: the core logs it and the default summary serves.
        output = await self._call("summary", session, messages, SUMMARY_TOOL, SUMMARY_SCHEMA)
        summary = read_summary(output, settings.summary_max_chars, settings.language)
        if isinstance(summary, str):
            log.warning("AI summary unusable, the default summary serves: %s", summary)
            return None
        log.info("AI summary written (%d characters, language %s)", len(summary.description),
                 summary.language or "unknown")
        return summary

    @hookimpl
    async def map_fields(
        self, session: Session, transcript: Sequence[Message], summary: Summary
    ) -> dict[str, FieldValue]:
        context, settings, _ = self._ready()
        if not settings.fields:
            return {}
        messages = fields_messages(session, transcript, summary, settings.fields)
        # Unavailable: the core logs it and the other plugins' fields (the rules) apply.
        output = await self._call("fields", session, messages, FIELDS_TOOL,
                                  fields_schema(settings.fields))
        outcome = read_fields(output, settings.fields)
        if outcome.problem:
            log.warning("AI fields unusable, none filled: %s", outcome.problem)
        for column, why in outcome.rejected.items():
            given = output.value.get(column) if output.value is not None else None
            log.warning("AI field %s left empty: %s", column, why,
                        extra={"given": customer_text(str(given))})
        await context.state.put(f"fields:{session.id}", {
            "filled": {column: value.value for column, value in outcome.values.items()},
            "rejected": outcome.rejected,
            "problem": outcome.problem,
        })
        log.info("AI fields filled: %s", ", ".join(outcome.values) or "none")
        kinds = {f.column: f.kind for f in settings.fields}
        # A rejected answer leaves the column empty; the note tells the rep why, on the case.
        rejected = {column: FieldValue("", kinds.get(column, "text"), self.name,
                                       note=why)
                    for column, why in outcome.rejected.items()}
        return {**rejected, **outcome.values}
