"""Counting tokens without a tokenizer: a request's worst case before it runs, its real usage after.

:func:`plan` bounds what a request may cost: a conservative prompt estimate (UTF-8 bytes / 3, which
over-counts English by about a third and is close for CJK) plus its output budget (``max_tokens``,
``max_completion_tokens``, ``parameters.max_new_tokens``, or a configured default). A request of the
OpenAI routes or of text generation (TGI or the task API) that names no maximum is given the default
explicitly, so the upstream can never generate more than was reserved.

:class:`UsageProbe` watches the response as it goes out and reports what was really used: the
``usage`` object of OpenAI-style answers and streams, TGI's ``details.generated_tokens``, and
otherwise one token per streamed event (or the generated text's estimate).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from hfasgi.operations import Operation, Route

__all__ = ["TokenPlan", "UsageProbe", "asked_output", "estimate_text", "output_field", "plan", "with_maximum"]

_GENERATIVE_TASKS = frozenset(
    {"chat-completion", "text-generation", "summarization", "translation", "text2text-generation", "image-to-text"}
)
_PER_MESSAGE = 4
_PER_IMAGE = 1024
_MAX_PROBED_BODY = 4 * 1024 * 1024
_TEXT_KEYS = ("generated_text", "summary_text", "translation_text")
_TOTAL = re.compile(rb'"total_tokens"\s*:\s*(\d+)')
_PROMPT = re.compile(rb'"prompt_tokens"\s*:\s*(\d+)')
_COMPLETION = re.compile(rb'"completion_tokens"\s*:\s*(\d+)')
_GENERATED = re.compile(rb'"generated_tokens"\s*:\s*(\d+)')


_USAGE_MARKERS = (b'"usage":{', b'"usage": {', b'"generated_tokens"')


def _usage_lines(block: bytes) -> list[bytes]:
    """The lines of ``block`` (whole lines) that hold a usage object or TGI's generated-token count, in order."""
    spans: set[tuple[int, int]] = set()
    for marker in _USAGE_MARKERS:
        at = block.find(marker)
        while at != -1:
            start = block.rfind(b"\n", 0, at) + 1
            end = block.find(b"\n", at)
            end = len(block) if end == -1 else end
            spans.add((start, end))
            at = block.find(marker, end)
    return [block[start:end] for start, end in sorted(spans)]


def estimate_text(text: str) -> int:
    """A conservative token estimate for ``text``: ceil(UTF-8 bytes / 3)."""
    return -(-len(text.encode("utf-8", "surrogatepass")) // 3)


@dataclass(frozen=True, slots=True)
class TokenPlan:
    """A request's reservation: ``prompt`` + ``output`` tokens.

    ``defaulted``: the output is the configured default (the request named no maximum); ``inject``
    names the body field that then carries that maximum to the upstream (``max_tokens``, or
    ``parameters.max_new_tokens`` for text generation); ``choices`` multiplies it.
    """

    prompt: int
    output: int
    defaulted: bool = False
    inject: str | None = None
    choices: int = 1

    @property
    def total(self) -> int:
        return self.prompt + self.output


def plan(op: Operation, document: Any, default_max_tokens: int) -> TokenPlan:
    """The worst case of a request (``document`` is its parsed JSON body, or ``None`` for raw bytes).

    A task route whose task is unknown (``/models/{id}`` with no catalog entry) may generate, so it
    reserves the default output; the body is rewritten only where the field is known to be right.
    """
    route = op.route
    if not isinstance(document, dict):
        if op.task is None or op.task in _GENERATIVE_TASKS:
            return TokenPlan(_estimate(document), default_max_tokens, defaulted=True)
        return TokenPlan(_estimate(document), 0)
    if route is Route.CHAT:
        prompt = _chat_prompt(document)
        asked = _int(document.get("max_completion_tokens")) or _int(document.get("max_tokens"))
        choices = max(1, _int(document.get("n")) or 1)
        if asked is None:
            return TokenPlan(prompt, default_max_tokens * choices, True, "max_tokens", choices)
        return TokenPlan(prompt, asked * choices, choices=choices)
    if route is Route.COMPLETIONS:
        prompt = _estimate(document.get("prompt"))
        asked = _int(document.get("max_tokens"))
        choices = max(1, _int(document.get("n")) or 1, _int(document.get("best_of")) or 1)
        if asked is None:
            return TokenPlan(prompt, default_max_tokens * choices, True, "max_tokens", choices)
        return TokenPlan(prompt, asked * choices, choices=choices)
    if route is Route.EMBEDDINGS:
        return TokenPlan(_estimate(document.get("input")), 0)
    prompt = _estimate(document.get("inputs"))
    if op.route is Route.TASK and op.task is not None and op.task not in _GENERATIVE_TASKS:
        return TokenPlan(prompt, 0)
    parameters = document.get("parameters")
    asked = None
    if isinstance(parameters, dict):
        asked = _int(parameters.get("max_new_tokens"))
        generate = parameters.get("generate_parameters")
        if asked is None and isinstance(generate, dict):
            asked = _int(generate.get("max_new_tokens"))
    if asked is None:
        text_generation = op.route is not Route.TASK or op.task == "text-generation"
        inject = "parameters.max_new_tokens" if text_generation else None
        return TokenPlan(prompt, default_max_tokens, defaulted=True, inject=inject)
    return TokenPlan(prompt, asked)


def output_field(op: Operation) -> str | None:
    """Where a request of ``op`` names its output maximum (``max_tokens``, ``parameters.max_new_tokens``)."""
    if op.route in (Route.CHAT, Route.COMPLETIONS):
        return "max_tokens"
    if op.route in (Route.GENERATE, Route.GENERATE_STREAM, Route.COMPAT_GENERATE) or op.task == "text-generation":
        return "parameters.max_new_tokens"
    return None


def asked_output(op: Operation, document: dict[str, Any]) -> tuple[str, int] | None:
    """The output maximum a request asks for, and the field it used (``None`` when it names none)."""
    if op.route is Route.CHAT:
        for name in ("max_completion_tokens", "max_tokens"):
            value = _int(document.get(name))
            if value is not None:
                return name, value
        return None
    if op.route is Route.COMPLETIONS:
        value = _int(document.get("max_tokens"))
        return None if value is None else ("max_tokens", value)
    parameters = document.get("parameters")
    if output_field(op) is not None and isinstance(parameters, dict):
        value = _int(parameters.get("max_new_tokens"))
        return None if value is None else ("parameters.max_new_tokens", value)
    return None


def with_maximum(document: dict[str, Any], field: str, value: int) -> dict[str, Any]:
    """``document`` with ``max_tokens`` or ``parameters.max_new_tokens`` set to ``value`` (a copy)."""
    head, _, leaf = field.partition(".")
    if not leaf:
        return {**document, head: value}
    inner = document.get(head)
    return {**document, head: {**(inner if isinstance(inner, dict) else {}), leaf: value}}


def _int(value: Any) -> int | None:
    """A non-negative count; a whole float (``100.0``, ``1e2``) counts too, as JSON Schema and upstreams read it."""
    if type(value) is int:
        return value if value >= 0 else None
    if type(value) is float and value.is_integer() and 0 <= value < 2**53:
        return int(value)
    return None


def _estimate(value: Any) -> int:
    if isinstance(value, str):
        return estimate_text(value)
    if isinstance(value, list):
        return sum(_estimate(item) if isinstance(item, str | list) else 1 for item in value)
    return 0


def _chat_prompt(document: dict[str, Any]) -> int:
    total = 0
    messages = document.get("messages")
    if isinstance(messages, list):
        for message in messages:
            total += _PER_MESSAGE
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                total += estimate_text(content)
            elif isinstance(content, list):
                for part in content:
                    if isinstance(part, dict):
                        text = part.get("text")
                        total += estimate_text(text) if isinstance(text, str) else _PER_IMAGE
    tools = document.get("tools")
    if tools:
        total += estimate_text(json.dumps(tools))
    return total


class UsageProbe:
    """Watch a response go out and work out the tokens it used (see the module docstring).

    Feed it every ``http.response.*`` message with :meth:`observe`; :meth:`used` then gives the
    total tokens (prompt + completion). Responses with an error status count as zero.
    """

    __slots__ = ("_body", "_completion", "_events", "_exact", "_prompt", "_stream", "_tail", "status")

    def __init__(self, prompt_estimate: int) -> None:
        self._prompt = prompt_estimate
        self.status = 0
        self._stream = False
        self._body: list[bytes] | None = None
        self._tail = b""
        self._events = 0
        self._exact: int | None = None
        self._completion: int | None = None

    def observe(self, message: Any) -> None:
        """Look at one outgoing ASGI message."""
        kind = message["type"]
        if kind == "http.response.body":
            chunk = message.get("body", b"")
            if not chunk or self.status >= 400:
                return
            if self._stream:
                self._scan(chunk)
            elif self._body is not None:
                self._body.append(chunk)
                if sum(map(len, self._body)) > _MAX_PROBED_BODY:
                    self._body = None
        elif kind == "http.response.start":
            self.status = message["status"]
            for name, value in message.get("headers", ()):
                if name.lower() == b"content-type":
                    self._stream = value.startswith(b"text/event-stream")
                    break
            self._body = None if self._stream else []

    def used(self) -> int:
        """Tokens used: exact when the response said, else estimated; 0 for an error or no response."""
        if self.status == 0 or self.status >= 400:
            return self._seen_stream() if self._stream else 0
        if not self._stream and self._body:
            self._read_document(b"".join(self._body))
            self._body = None
        if self._exact is not None:
            return self._exact
        if self._completion is not None:
            return self._prompt + self._completion
        if self._stream:
            return self._seen_stream()
        return self._prompt

    def _seen_stream(self) -> int:
        if self._exact is not None:
            return self._exact
        return self._prompt + (self._completion if self._completion is not None else self._events)

    def _scan(self, chunk: bytes) -> None:
        data = self._tail + chunk
        cut = data.rfind(b"\n") + 1
        block, self._tail = data[:cut], data[cut:]
        # one token per event, counted with byte searches; only the lines that carry usage are parsed
        events = block.count(b"\ndata:") + block.startswith(b"data:")
        end = block[-32:]  # "[DONE]" is the last event, if it is in this block at all
        events -= end.count(b"data: [DONE]") + end.count(b"data:[DONE]")
        for line in _usage_lines(block):
            if not line.startswith(b"data:"):
                continue
            try:
                event = json.loads(line[5:].strip())
            except ValueError:
                continue
            if isinstance(event, dict):
                if self._from_usage(event.get("usage")):
                    if not event.get("choices"):
                        events -= 1  # the usage-only chunk carries no token
                else:
                    self._from_details(event.get("details"))
        self._events += events

    def _read_document(self, raw: bytes) -> None:
        # The counts are found with a regular expression, not by parsing: an embeddings answer may be
        # megabytes of floats. A quote inside a JSON string is escaped, so these keys cannot be faked
        # by generated text.
        found = _TOTAL.findall(raw)
        if found:
            self._exact = int(found[-1])
            return
        prompt, completion = _PROMPT.findall(raw), _COMPLETION.findall(raw)
        if prompt and completion:
            self._exact = int(prompt[-1]) + int(completion[-1])
            return
        generated = _GENERATED.findall(raw)
        if generated:
            self._completion = int(generated[-1])
            return
        if b'_text"' not in raw:
            return
        try:
            document = json.loads(raw)
        except ValueError:
            return
        if isinstance(document, list) and document and isinstance(document[0], dict):
            document = document[0]
        if isinstance(document, dict):
            for key in _TEXT_KEYS:
                text = document.get(key)
                if isinstance(text, str):
                    self._completion = estimate_text(text)
                    return

    def _from_usage(self, usage: Any) -> bool:
        if not isinstance(usage, dict):
            return False
        total = usage.get("total_tokens")
        if type(total) is not int:
            prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
            if type(prompt) is not int or type(completion) is not int:
                return False
            total = prompt + completion
        self._exact = total
        return True

    def _from_details(self, details: Any) -> bool:
        if isinstance(details, dict) and type(details.get("generated_tokens")) is int:
            self._completion = details["generated_tokens"]
            return True
        return False
