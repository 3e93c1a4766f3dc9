"""``[plugins.ai]``: the endpoint, the model, the prompts and the AI-filled fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from casebridge.plugin import Secret

DEFAULT_SYSTEM_PROMPT = (
    "You are the first-line support assistant of our company. Answer the customer's "
    "questions briefly, politely and in the language they write in, using only the reference "
    "material you are given and general knowledge. Hand the conversation to a human when the "
    "customer asks for one, when you cannot help with what they need, when money, contracts, "
    "complaints or personal data are involved, or when you are unsure."
)


@dataclass(frozen=True, slots=True)
class AiField:
    """One ``[[plugins.ai.fields]]`` entry: a CRM column the model fills.

    ``column`` is the CRM's column name (``PriorityId``), ``description`` tells the model what
    belongs in it. A ``lookup`` column lists its ``allowed`` display values; the model's choice
    must be one of them (compared without regard to case and surrounding blanks) or the
    column is left empty. A ``text`` value is cut at ``max_chars``.
    """

    column: str
    description: str
    kind: Literal["text", "lookup"] = "text"
    allowed: list[str] = field(default_factory=list)
    max_chars: int = 250

    def __post_init__(self) -> None:
        if not self.column.strip():
            raise ValueError("fields: column must not be empty")
        if not self.description.strip():
            raise ValueError(f"fields: {self.column}: description must not be empty")
        if self.kind == "lookup" and not [a for a in self.allowed if a.strip()]:
            raise ValueError(f"fields: {self.column}: a lookup needs its allowed values")
        if self.kind == "text" and self.allowed:
            raise ValueError(f"fields: {self.column}: allowed values are for lookups only")
        if self.max_chars < 1:
            raise ValueError(f"fields: {self.column}: max_chars must be at least 1")

# The assistant's answer is retried while a customer waits: a couple of short tries at most.
_LIVE_RETRIES = 2
_LIVE_BACKOFF_CAP = 10.0


@dataclass(frozen=True, slots=True)
class AiSettings:
    """``[plugins.ai]``.

    ``base_url`` is the OpenAI-compatible API root, the part before ``/chat/completions``
    (``https://api.openai.com/v1``, ``http://127.0.0.1:11434/v1`` for Ollama). ``api_key`` (from
    ``{env = "NAME"}`` or ``{file = "path"}``, never written in the TOML) is sent as a Bearer
    token when set. ``knowledge_files`` are read at start-up (paths relative
    to the TOML) and given to the assistant as reference material, at most
    ``knowledge_max_chars`` in all. ``language`` is the summary's language ("" = the
    customer's). Each call waits ``timeout`` seconds at most and is made once: a summary or
    fields call that fails leaves the defaults to serve. Only the assistant's answer, which a
    customer waits for, is tried ``retries`` more times (at most 2) on 429, 5xx, timeouts and
    connection failures, after a backoff from ``backoff_base`` to ``backoff_cap`` seconds (at
    most 10; a ``Retry-After`` above the cap hands the customer to a person at once). At
    most ``max_concurrency`` calls run at a time. ``use_tools`` asks for the structured
    answer as a tool call; false asks for a JSON ``response_format`` instead.
    """

    base_url: str
    model: str
    api_key: Secret | None = None
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    knowledge_files: list[str] = field(default_factory=list)
    knowledge_max_chars: int = 20_000
    language: str = ""
    summary_max_chars: int = 1500
    answer_max_chars: int = 2000
    history_messages: int = 30
    timeout: float = 30.0
    retries: int = 2
    backoff_base: float = 0.5
    backoff_cap: float = 2.0
    max_concurrency: int = 4
    temperature: float = 0.2
    max_tokens: int = 800
    use_tools: bool = True
    fields: list[AiField] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        if "@" in self.base_url.split("://", 1)[1].split("/", 1)[0]:
            # The URL appears in logs and handoff reasons; a key belongs in api_key.
            raise ValueError("base_url must not contain credentials: put the key in api_key")
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        if self.api_key is not None and self.api_key.origin == "literal":
            raise ValueError('api_key must come from the environment or a file: '
                             'api_key = {env = "NAME"} or {file = "path"}')
        if not self.model.strip():
            raise ValueError("model must not be empty")
        problems = []
        if not self.timeout > 0:
            problems.append(f"timeout must be positive, got {self.timeout}")
        if not 0 <= self.retries <= _LIVE_RETRIES:
            problems.append(f"retries must be 0 to {_LIVE_RETRIES} (a customer is waiting), "
                            f"got {self.retries}")
        if not 0 < self.backoff_base <= self.backoff_cap <= _LIVE_BACKOFF_CAP:
            problems.append("backoff_base must be positive and at most backoff_cap, and "
                            f"backoff_cap at most {_LIVE_BACKOFF_CAP:g} seconds")
        if self.max_concurrency < 1:
            problems.append(f"max_concurrency must be at least 1, got {self.max_concurrency}")
        if not 0 <= self.temperature <= 2:
            problems.append(f"temperature must be between 0 and 2, got {self.temperature}")
        if self.max_tokens < 16:
            problems.append(f"max_tokens must be at least 16, got {self.max_tokens}")
        if self.summary_max_chars < 100:
            problems.append(f"summary_max_chars must be at least 100, got {self.summary_max_chars}")
        if self.answer_max_chars < 1 or self.history_messages < 1:
            problems.append("answer_max_chars and history_messages must be at least 1")
        if self.knowledge_max_chars < 0:
            problems.append("knowledge_max_chars must be 0 or more")
        if problems:
            raise ValueError("; ".join(problems))
        columns = [f.column for f in self.fields]
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        if repeated:
            raise ValueError(f"fields: column {repeated[0]!r} is listed twice")
