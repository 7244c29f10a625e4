"""Fuzz target of the request validator: the body parser and the schema check, behind :class:`RequestValidator`.

Run by tests/validation/test_fuzz.py, either under atheris (coverage-guided)::

    python tests/validation/fuzz_target.py -max_total_time=20 -rss_limit_mb=2048 CORPUS_DIR [SEED_DIR]

or, where atheris is missing, through :meth:`Harness.check` driven by hypothesis. It is also the shared
harness of tests/validation/test_properties.py: :func:`cases` (every validated route and task, with
the schema its body must satisfy) and :func:`build_instance` (a schema-valid body, choices made by a
:class:`Chooser`: the first option each time here, hypothesis draws in the property tests).

One fuzz input is ``[case, content type, flags, *body]``:

* ``case``: index into :func:`cases` (mod their number);
* ``content type``: index into :data:`CONTENT_TYPES`; one past the end means "the body's first line is the
  header value";
* ``flags``: bit 0 the body arrives in chunks, bit 1 a ``content-length`` is declared, bit 2 it is too
  large by 7, bit 6 it is not a number; bit 3 the caller is a principal with caps (``max_tokens`` 16,
  ``max_prompt_length`` 64).

:func:`check_one` raises (``AssertionError`` or whatever escaped) on a broken property: an exception other
than the 4xx ``GatewayError``/``Violation`` of the parser and the engine, a response that is not exactly
one ``http.response.start`` followed by body messages, a status >= 500, an error without the envelope,
an inner app reached by a body the independent engine (``jsonschema``) refuses, or a refusal of a body
it accepts (non-finite numbers and lone surrogates aside: see :func:`engines_differ`).
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

# Run as a script (atheris) this module imports nothing from tests/, and hfasgi only inside functions: the
# imports in main() happen under atheris.instrument_imports, so the validator's code is what gets instrumented.

MAX_BODY_BYTES = 4096
"""The validator's body limit in the fuzzer, small enough for libFuzzer's inputs to pass it."""
PRINCIPAL_MAX_TOKENS = 16
PRINCIPAL_MAX_PROMPT = 64
COMMON_TASK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["inputs"],
    "properties": {"parameters": {"type": "object"}, "options": {"type": "object"}},
}
"""What a task request of an unknown task must be (RequestValidator's docstring: "only the common shape")."""
CONTENT_TYPES: tuple[str | None, ...] = (
    None,
    "application/json",
    "application/json; charset=utf-8",
    "Application/JSON ",
    "application/problem+json",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "image/png",
    "image/jpeg",
    "audio/wav",
    "audio/mpeg",
    "video/mp4",
    "video/webm",
    "application/octet-stream",
    "",
    ";",
    "image",
    "/json",
)
GATEWAY_ERROR_TYPES = frozenset(
    {"invalid_json", "invalid_request", "payload_too_large", "unsupported_media_type", "validation"}
)
"""What the validator may answer with (it never says anything else)."""
MEDIA_SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "image": (
        b"\x89PNG\r\n\x1a\n",
        b"\xff\xd8\xff",
        b"GIF87a",
        b"GIF89a",
        b"II*\x00",
        b"MM\x00*",
        b"RIFF\x00\x00\x00\x00WEBP",
        b"BM\x36\x00\x0c\x00\x00\x00\x00\x00",
        b"\x00\x00\x00\x1cftypavif",
    ),
    "audio": (b"fLaC", b"OggS", b"ID3", b"#!AMR", b"RIFF\x00\x00\x00\x00WAVE", b"\x00\x00\x00\x20ftypM4A "),
    "video": (b"\x1aE\xdf\xa3", b"\x00\x00\x00\x18ftypisom"),
}
"""A few magic numbers per media kind, written from the formats' specs (not taken from hfasgi.validation.media)."""


@dataclass(frozen=True, eq=False)
class Case:
    """One validated route (or task): where to send, and what a body must be to be forwarded."""

    name: str
    """``chat``, ``generate_stream``, ``task:image-classification``, ``task:?`` (unknown task)..."""
    route_path: Callable[[str], str] = field(repr=False)
    """The request path for a model id."""
    kind: str
    """The upstream kind that serves the route (``openai``, ``tgi``, ``serverless``)."""
    schema: Mapping[str, Any] = field(repr=False)
    """The JSON Schema a JSON body must satisfy."""
    media: str | None = None
    """``image``/``audio``/``video``: raw bytes of that kind are accepted too."""
    task: str | None = None
    raw_passthrough: bool = False
    """A task whose name the gateway cannot know: raw (non-JSON) bodies go to the upstream, which decides."""

    def path(self, model: str = "fuzz/model") -> str:
        return self.route_path(model)


@cache
def cases() -> tuple[Case, ...]:
    """Every route the validator checks, each task of ``TASK_SCHEMAS`` and ``BINARY_TASKS``, and an unknown task."""
    from hfasgi.validation.schemas import BINARY_TASKS, ROUTE_SCHEMAS, TASK_SCHEMAS

    found = [
        Case("chat", lambda m: "/v1/chat/completions", "openai", ROUTE_SCHEMAS["chat"]),
        Case("completions", lambda m: "/v1/completions", "openai", ROUTE_SCHEMAS["completions"]),
        Case("embeddings", lambda m: "/v1/embeddings", "openai", ROUTE_SCHEMAS["embeddings"]),
        Case("generate", lambda m: "/generate", "tgi", ROUTE_SCHEMAS["generate"]),
        Case("generate_stream", lambda m: "/generate_stream", "tgi", ROUTE_SCHEMAS["generate"]),
        Case("compat_generate", lambda m: "/", "tgi", ROUTE_SCHEMAS["generate"]),
    ]
    for task in sorted(set(TASK_SCHEMAS) | set(BINARY_TASKS)):
        found.append(
            Case(
                f"task:{task}",
                lambda m, t=task: f"/models/{m}/pipeline/{t}",
                "serverless",
                TASK_SCHEMAS.get(task, COMMON_TASK_SCHEMA),
                media=BINARY_TASKS.get(task),
                task=task,
            )
        )
    found.append(Case("task:?", lambda m: f"/models/{m}", "serverless", COMMON_TASK_SCHEMA, raw_passthrough=True))
    return tuple(found)


@cache
def reference_validator(case_name: str) -> Any:
    """The independent engine: the pure-Python ``jsonschema`` package, Draft 2020-12."""
    from jsonschema import Draft202012Validator

    schema = next(c.schema for c in cases() if c.name == case_name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def engines_differ(value: Any) -> bool:
    """Whether ``value`` holds what ``jsonschema_rs`` may refuse though ``jsonschema`` accepts it.

    NaN and the infinities (``jsonschema_rs`` reads them as ``null``), lone surrogates (``"\\ud800"``,
    not Unicode: the validator refuses them) and nesting deeper than ``jsonschema_rs`` explains.
    """
    non_finite = _walk(value, lambda v: isinstance(v, float) and not math.isfinite(v), limit=200)
    return non_finite or has_lone_surrogate(value)


def has_lone_surrogate(value: Any) -> bool:
    """Whether a key or a string of ``value`` holds a lone surrogate (which UTF-8 cannot encode)."""
    return _walk(value, lambda v: isinstance(v, str) and not v.isascii() and _lone_surrogate(v))


def _walk(value: Any, test: Callable[[Any], bool], limit: int | None = None) -> bool:
    """Whether ``test`` holds for a key or value in ``value`` (or it is nested deeper than ``limit``)."""
    stack = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if limit is not None and depth > limit:
            return True
        if isinstance(node, dict):
            for key, item in node.items():
                if test(key):
                    return True
                stack.append((item, depth + 1))
        elif isinstance(node, list):
            stack.extend((item, depth + 1) for item in node)
        elif test(node):
            return True
    return False


def _lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def reference_verdict(case: Case, document: Any) -> bool | None:
    """``jsonschema``'s verdict on ``document`` (``None``: nested too deeply for it to say)."""
    try:
        return bool(reference_validator(case.name).is_valid(document))
    except RecursionError:
        return None


def media_of(body: bytes) -> str | None:
    """The media kind of ``body`` by the signatures of :data:`MEDIA_SIGNATURES` (RIFF and ftyp by their brand)."""
    head = body[:16]
    for kind, magics in MEDIA_SIGNATURES.items():
        if any(not m.startswith((b"RIFF", b"\x00", b"BM")) and head.startswith(m) for m in magics):
            return kind
    if head[:2] == b"BM" and head[6:10] == b"\x00\x00\x00\x00":  # BITMAPFILEHEADER: reserved words are zero
        return "image"
    if head[:4] == b"RIFF" and len(head) >= 12:
        return {b"WEBP": "image", b"WAVE": "audio", b"AVI ": "video"}.get(head[8:12])
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return (
            "audio"
            if brand in (b"M4A ", b"M4B ")
            else "image"
            if brand in (b"avif", b"avis", b"heic", b"heix", b"mif1")
            else "video"
        )
    if len(head) >= 3 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:  # an MPEG audio frame header
        version, layer = (head[1] >> 3) & 3, (head[1] >> 1) & 3
        if layer == 0:  # ADTS (AAC): a 12-bit sync and a sampling-frequency index of 0..12
            return "audio" if head[1] & 0xF0 == 0xF0 and (head[2] >> 2) & 0x0F <= 12 else None
        if version != 1 and head[2] >> 4 != 0x0F and (head[2] >> 2) & 3 != 3:  # no reserved version/rate
            return "audio"
    return None


def json_object(body: bytes) -> dict[str, Any] | None:
    """``body`` as a JSON object the way a Python upstream reads it (``json.loads`` of the bytes), else ``None``."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


def json_like(body: bytes) -> bool:
    """Whether ``body`` is text (UTF-8, UTF-16/32, a BOM or not) starting after JSON whitespace with ``{[\"``."""
    try:
        encoding = json.detect_encoding(body)
        text = body[:4096].decode(encoding, "ignore")
    except (LookupError, ValueError):
        return False
    return text.lstrip(" \t\r\n\ufeff")[:1] in ("{", "[", '"')


def declared_kind(content_type: str | None) -> str | None:
    major = (content_type or "").split(";")[0].split("/")[0].strip().lower()
    return major if major in ("image", "audio", "video") else None


def admissible(case: Case, body: bytes, content_type: str | None) -> str | None:
    """Why a body that *reached the upstream* should not have (``None``: it is fine there).

    A JSON object must satisfy the schema (checked by ``jsonschema``); anything else must be raw media of
    the task's kind (by magic number or declared type) or go to a task the gateway cannot name.
    """
    document = json_object(body)
    if document is not None:
        if reference_verdict(case, document) is not False:
            return None  # valid, or too deep for jsonschema to tell
        errors = sorted(reference_validator(case.name).iter_errors(document), key=lambda e: list(e.path))
        if errors:
            where = "/".join(str(p) for p in errors[0].absolute_path)
            return f"a schema-invalid JSON object was forwarded ({where or '<root>'}: {errors[0].message[:200]})"
        return None
    if not body:
        return "an empty body was forwarded"
    if case.raw_passthrough:
        return None
    if case.media is None:
        return f"raw bytes (not a JSON object) were forwarded to a JSON-only route {case.name}"
    if media_of(body) == case.media or (media_of(body) is None and declared_kind(content_type) == case.media):
        return None
    if case.media == "audio" and media_of(body) == "video" and (body[:4] == b"\x1aE\xdf\xa3" or body[4:8] == b"ftyp"):
        return None  # WebM and MP4 containers hold audio too
    return f"raw bytes that are not {case.media} ({body[:12]!r}, {content_type!r}) were forwarded to {case.name}"


# --------------------------------------------------------------------------- schema-valid instances


class Chooser(Protocol):
    """Every choice :func:`build_instance` makes (deterministic here; hypothesis draws in the property tests)."""

    def pick(self, options: Sequence[Any]) -> Any: ...
    def include(self, key: str) -> bool: ...
    def size(self, low: int, high: int) -> int: ...
    def integer(self, low: int | None, high: int | None) -> int: ...
    def number(self, low: float | None, high: float | None, exclude_low: bool, exclude_high: bool) -> float: ...
    def text(self, low: int, high: int | None, pattern: str | None, hints: Sequence[str]) -> str: ...
    def anything(self) -> Any: ...


class FirstChooser:
    """The first option, every optional key when ``full``, small in-range values: a deterministic seed body."""

    def __init__(self, full: bool) -> None:
        self.full = full

    def pick(self, options: Sequence[Any]) -> Any:
        return options[0]

    def include(self, key: str) -> bool:
        return self.full

    def size(self, low: int, high: int) -> int:
        return min(max(low, 1 if self.full else low), high)

    def integer(self, low: int | None, high: int | None) -> int:
        value = 1 if low is None else max(low, 1)
        return value if high is None else min(value, high)

    def number(self, low: float | None, high: float | None, exclude_low: bool, exclude_high: bool) -> float:
        lo = 0.0 if low is None else low
        hi = lo + 1.0 if high is None else high
        if low is None and high is not None:
            lo = hi - 1.0
        return (lo + hi) / 2 if exclude_low or exclude_high else lo if low is not None else (lo + hi) / 2

    def text(self, low: int, high: int | None, pattern: str | None, hints: Sequence[str]) -> str:
        value = "hello world" if low <= 11 else "hello world" * (low // 11 + 1)
        return value if high is None else value[:high]

    def anything(self) -> Any:
        return "hello world"


def _types(schema: Mapping[str, Any]) -> list[str]:
    kind = schema.get("type")
    if isinstance(kind, str):
        return [kind]
    if isinstance(kind, list):
        return list(kind)
    if "properties" in schema or "required" in schema or "additionalProperties" in schema:
        return ["object"]
    if "items" in schema or "minItems" in schema:
        return ["array"]
    if "minLength" in schema or "maxLength" in schema or "pattern" in schema:
        return ["string"]
    if "minimum" in schema or "maximum" in schema:
        return ["number"]
    return []


def merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """A naive ``allOf`` of two schemas: properties merged (recursively), ``required`` united, the rest overridden."""
    out = dict(base)
    for key, value in extra.items():
        if key == "properties" and isinstance(out.get(key), Mapping):
            props = dict(out[key])
            for name, sub in value.items():
                props[name] = merge(props[name], sub) if isinstance(props.get(name), Mapping) else sub
            out[key] = props
        elif key == "required":
            out[key] = [*out.get(key, []), *(k for k in value if k not in out.get(key, []))]
        elif key == "type" and "type" in out:
            mine = set(_types(out))
            theirs = [t for t in _types(extra) if t in mine or (t == "number" and "integer" in mine)]
            out[key] = theirs or _types(extra)
        else:
            out[key] = value
    return out


def _hints(schema: Any) -> list[str]:
    """Every string ``const``/``enum`` value of a schema: strings drawn from it take discriminated branches."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            if isinstance(node.get("const"), str):
                found.add(node["const"])
            for value in node.get("enum", []) if isinstance(node.get("enum"), list) else []:
                if isinstance(value, str):
                    found.add(value)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return sorted(found)


def _matches(schema: Mapping[str, Any], value: Any) -> bool:
    from jsonschema import Draft202012Validator

    return bool(Draft202012Validator(schema).is_valid(value))


def build_instance(schema: Any, chooser: Chooser, hints: Sequence[str] | None = None, depth: int = 0) -> Any:
    """A value meant to satisfy ``schema`` (not guaranteed: callers check it), choices made by ``chooser``.

    ``if``/``then``/``else`` (alone or in ``allOf``) are made to hold after the fact: an object gets the
    branch's required keys and retyped properties, any other value is drawn again from the branch.
    """
    if hints is None:
        hints = _hints(schema)
    if schema is True or not isinstance(schema, Mapping) or depth > 12:
        return chooser.anything()
    base = dict(schema)
    conditionals: list[Mapping[str, Any]] = []
    for sub in base.pop("allOf", []):
        if "if" in sub:
            conditionals.append(sub)
        else:
            base = merge(base, sub)
    if "if" in base:
        conditionals.append({k: base.pop(k) for k in ("if", "then", "else") if k in base})
    for key in ("anyOf", "oneOf"):
        if key in base:
            branches = base.pop(key)
            base = merge(base, chooser.pick(branches))
    value = _build_plain(base, chooser, hints, depth)
    for _ in range(2):
        for cond in conditionals:
            branch = cond.get("then") if _matches(cond["if"], value) else cond.get("else")
            if not isinstance(branch, Mapping) or _matches(branch, value):
                continue
            if isinstance(value, dict):
                properties = base.get("properties", {})
                merged = merge({"properties": properties}, branch)
                for name in branch.get("required", []):
                    if name not in value:
                        value[name] = build_instance(merged["properties"].get(name, {}), chooser, hints, depth + 1)
                for name in branch.get("properties", {}):
                    if name in value and not _matches(merged["properties"][name], value[name]):
                        value[name] = build_instance(merged["properties"][name], chooser, hints, depth + 1)
            else:
                value = build_instance(merge(base, branch), chooser, hints, depth + 1)
    return value


def _build_plain(schema: dict[str, Any], chooser: Chooser, hints: Sequence[str], depth: int) -> Any:
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return chooser.pick(schema["enum"])
    types = _types(schema)
    kind = chooser.pick(sorted(types, key=lambda t: t == "null")) if types else None
    if kind is None:
        return chooser.anything()
    if kind == "null":
        return None
    if kind == "boolean":
        return chooser.pick([True, False])
    if kind == "integer":
        low, high = schema.get("minimum"), schema.get("maximum")
        if "exclusiveMinimum" in schema:
            low = math.floor(schema["exclusiveMinimum"]) + 1
        if "exclusiveMaximum" in schema:
            high = math.ceil(schema["exclusiveMaximum"]) - 1
        return chooser.integer(None if low is None else math.ceil(low), None if high is None else math.floor(high))
    if kind == "number":
        low, high, xlow, xhigh = schema.get("minimum"), schema.get("maximum"), False, False
        if "exclusiveMinimum" in schema:
            low, xlow = schema["exclusiveMinimum"], True
        if "exclusiveMaximum" in schema:
            high, xhigh = schema["exclusiveMaximum"], True
        return chooser.number(low, high, xlow, xhigh)
    if kind == "string":
        return chooser.text(schema.get("minLength", 0), schema.get("maxLength"), schema.get("pattern"), hints)
    if kind == "array":
        items = schema.get("items", {})
        prefix = schema.get("prefixItems", [])
        low = max(schema.get("minItems", 0), len(prefix))
        high = schema.get("maxItems", low + 3)
        count = chooser.size(low, max(low, min(high, low + 3)))
        return [
            build_instance(prefix[i] if i < len(prefix) else items, chooser, hints, depth + 1) for i in range(count)
        ]
    if kind == "object":
        properties: Mapping[str, Any] = schema.get("properties", {})
        out: dict[str, Any] = {}
        for name in schema.get("required", []):
            out[name] = build_instance(properties.get(name, {}), chooser, hints, depth + 1)
        for name, sub in properties.items():
            if name not in out and chooser.include(name):
                out[name] = build_instance(sub, chooser, hints, depth + 1)
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping) and not properties:
            for i in range(chooser.size(0, 2)):
                out[f"k{i}"] = build_instance(extra, chooser, hints, depth + 1)
        for name, needed in schema.get("dependentRequired", {}).items():
            if name in out:
                for other in needed:
                    if other not in out:
                        out[other] = build_instance(properties.get(other, {}), chooser, hints, depth + 1)
        return out
    return chooser.anything()


def seed_bodies(case: Case) -> list[bytes]:
    """Valid bodies of ``case`` (the minimal one and one with every optional field), plus raw media if it takes it."""
    validator = reference_validator(case.name)
    found: list[bytes] = []
    for full in (False, True):
        document = build_instance(case.schema, FirstChooser(full))
        if validator.is_valid(document):
            found.append(json.dumps(document).encode())
    if case.media is not None:
        found.extend(magic + b"\x00" * 32 for magic in MEDIA_SIGNATURES[case.media])
    return found


def encode_input(case_index: int, content_type_index: int, flags: int, body: bytes) -> bytes:
    """One fuzz input (see the module docstring)."""
    return bytes([case_index % 256, content_type_index % 256, flags % 256]) + body


# --------------------------------------------------------------------------- the harness


class Harness:
    """The validator under test, compiled once, and an event loop to drive it."""

    def __init__(self) -> None:
        from hfasgi.context import RequestContext, get_context
        from hfasgi.errors import GatewayError
        from hfasgi.principal import Principal
        from hfasgi.validation import RequestValidator, ValidatorConfig, Violation

        self.RequestContext, self.get_context, self.GatewayError, self.Violation = (
            RequestContext,
            get_context,
            GatewayError,
            Violation,
        )
        self.principal = Principal(id="fuzz", max_tokens=PRINCIPAL_MAX_TOKENS, max_prompt_length=PRINCIPAL_MAX_PROMPT)
        self.config = ValidatorConfig(max_body_bytes=MAX_BODY_BYTES)
        self.inner_calls: list[bytes] = []
        self.compiled: dict[str, Any] = {}
        self.layer = RequestValidator(self._inner, config=self.config)
        self.loop = asyncio.new_event_loop()
        self.runs = 0
        self.forwarded = 0

    def close(self) -> None:
        self.loop.close()

    async def _inner(self, scope: Any, receive: Any, send: Any) -> None:
        chunks = []
        while True:
            message = await receive()
            assert message["type"] == "http.request", f"the inner app got {message!r}"
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        self.inner_calls.append(b"".join(chunks))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"{}", "more_body": False})

    def check(self, data: bytes) -> None:
        """One input through the layer (and through ``RequestContext.json`` + ``CompiledSchema.check``)."""
        self.runs += 1
        if len(data) < 3:
            return
        all_cases = cases()
        case = all_cases[data[0] % len(all_cases)]
        pick = data[1] % (len(CONTENT_TYPES) + 1)
        flags, body = data[2], data[3:]
        if pick == len(CONTENT_TYPES):
            line, _, body = body.partition(b"\n")
            content_type: str | None = line.decode("latin-1")
        else:
            content_type = CONTENT_TYPES[pick]
        self._direct(case, body)
        self._through_layer(case, content_type, flags, body)

    def _direct(self, case: Case, body: bytes) -> None:
        ctx = self.RequestContext()
        ctx.body = body
        try:
            document = ctx.json()
        except self.GatewayError as err:
            assert err.status == 400 and err.error_type == "invalid_json", repr(err)
            return
        if not isinstance(document, dict):
            return
        compiled = self.compiled.get(case.name)
        if compiled is None:
            compiled = self.compiled[case.name] = _compiled_for(self.config, case)
        try:
            compiled.check(document)
        except self.Violation as violation:
            assert str(violation), "an empty violation message"
            if not engines_differ(document):
                assert reference_verdict(case, document) is not True, (
                    f"{case.name}: jsonschema_rs refused what jsonschema accepts: {violation} for {body[:300]!r}"
                )
        else:
            assert reference_verdict(case, document) is not False, (
                f"{case.name}: jsonschema_rs accepted what jsonschema refuses: {body[:300]!r}"
            )

    def _through_layer(self, case: Case, content_type: str | None, flags: int, body: bytes) -> None:
        headers: list[tuple[bytes, bytes]] = []
        if content_type is not None:
            headers.append((b"content-type", content_type.encode("latin-1")))
        if flags & 2:
            declared = str(len(body) + 7 if flags & 4 else len(body)).encode()
            headers.append((b"content-length", declared if not flags & 64 else b"12x"))
        chunks = [body]
        if flags & 1 and len(body) > 1:
            cut = len(body) // 3 or 1
            chunks = [body[:cut], b"", body[cut:]]
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": case.path(),
            "raw_path": case.path().encode(),
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 8000),
        }
        if flags & 8:
            self.get_context(scope).principal = self.principal
        pending = list(chunks)

        async def receive() -> dict[str, Any]:
            if pending:
                chunk = pending.pop(0)
                return {"type": "http.request", "body": chunk, "more_body": bool(pending)}
            await asyncio.sleep(3600)  # the client waits for the answer (a hang is caught by the timeout)
            return {"type": "http.disconnect"}

        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        self.inner_calls.clear()
        self.loop.run_until_complete(asyncio.wait_for(self.layer(scope, receive, send), 5.0))
        where = f"{case.name} {content_type!r} flags={flags:#x} body={body[:300]!r}"
        assert sent and sent[0]["type"] == "http.response.start", f"no response start: {sent!r} for {where}"
        starts = [m for m in sent if m["type"] == "http.response.start"]
        assert len(starts) == 1, f"{len(starts)} response starts for {where}"
        assert all(m["type"] == "http.response.body" for m in sent[1:]), f"stray messages {sent!r} for {where}"
        assert not sent[-1].get("more_body", False), f"the response never ended for {where}"
        assert all(m.get("more_body", False) for m in sent[1:-1]), f"body after the end for {where}"
        status = sent[0]["status"]
        assert 200 <= status < 500, f"status {status} for {where}"
        payload = b"".join(m.get("body", b"") for m in sent[1:])
        length = dict(sent[0].get("headers", [])).get(b"content-length")
        assert length is None or int(length) == len(payload), f"content-length {length!r} != {len(payload)}"
        if self.inner_calls:
            self.forwarded += 1
            assert status == 200, f"the inner app answered but the client got {status} for {where}"
            forwarded = self.inner_calls[0]
            ctx = self.get_context(scope)
            assert forwarded == ctx.body, f"the inner app got other bytes than the context's for {where}"
            declared = content_type if content_type is not None else None
            why = admissible(case, forwarded, declared)
            assert why is None, f"{why} for {where}"
            document = json_object(forwarded)
            if flags & 8 and document is not None:
                _check_caps(case, document, where)
            return
        assert status >= 400, f"{status} without reaching the inner app for {where}"
        envelope = json.loads(payload)
        assert isinstance(envelope, dict), f"the error is not an object: {payload!r}"
        assert isinstance(envelope.get("error"), str) and envelope["error"], f"no error message: {payload!r}"
        assert envelope.get("error_type") in GATEWAY_ERROR_TYPES, f"unexpected error_type: {payload!r}"
        expected = {
            "invalid_json": {400},
            "invalid_request": {400},
            "payload_too_large": {413},
            "unsupported_media_type": {415},
            "validation": {422},
        }
        assert status in expected[envelope["error_type"]], f"{status} with {envelope['error_type']} for {where}"
        if envelope["error_type"] == "validation" and not flags & 8:
            document = json_object(body)
            assert document is not None, f"422 for a body that is not a JSON object, {where}"
            if not engines_differ(document):
                assert reference_verdict(case, document) is not True, (
                    f"422 {envelope['error']!r} for a body jsonschema accepts, {where}"
                )


def _compiled_for(config: Any, case: Case) -> Any:
    """The ``CompiledSchema`` the validator uses for ``case``."""
    from hfasgi.operations import DEFAULT_ROUTES

    op = DEFAULT_ROUTES.match("POST", case.path())
    assert op is not None, case.path()
    compiled = config.schema_for(op, op.task)
    return compiled if compiled is not None else config._compiled["task:*"]


def _check_caps(case: Case, document: dict[str, Any], where: str) -> None:
    """A capped principal's request that went on asks for at most its ``max_tokens`` (set when it named none),
    and its prompt (``inputs``, ``prompt``, the messages' text ``content``) is at most ``max_prompt_length`` long."""
    prompt: Any = None
    if case.name in ("chat", "completions"):
        asked = [document.get(k) for k in ("max_tokens", "max_completion_tokens")]
        if case.name == "completions":
            prompt = document.get("prompt")
        elif isinstance(document.get("messages"), list):
            prompt = [m.get("content") for m in document["messages"] if isinstance(m, dict)]
    elif case.name in ("generate", "generate_stream", "compat_generate", "task:text-generation"):
        parameters = document.get("parameters")
        asked = [parameters.get("max_new_tokens")] if isinstance(parameters, dict) else [None]
        prompt = document.get("inputs")
    else:
        return
    numbers = [a for a in asked if isinstance(a, int | float) and not isinstance(a, bool)]
    assert numbers, f"no output maximum was set for a capped principal: {where}"
    assert all(n <= PRINCIPAL_MAX_TOKENS for n in numbers), f"the principal's max_tokens cap was exceeded: {where}"
    texts = [prompt] if isinstance(prompt, str) else [p for p in prompt or [] if isinstance(p, str)]
    if isinstance(prompt, list | str):
        length = sum(len(t) for t in texts)
        assert length <= PRINCIPAL_MAX_PROMPT, f"a {length}-character prompt passed the cap: {where}"


@cache
def harness() -> Harness:
    return Harness()


def check_one(data: bytes) -> None:
    """The fuzz property for one input (raises on a violation)."""
    harness().check(data)


def write_seeds(directory: Path) -> int:
    """Write a seed input per valid body of every case, per JSON content type and flag set; returns their number."""
    directory.mkdir(parents=True, exist_ok=True)
    count = 0
    for index, case in enumerate(cases()):
        for number, body in enumerate(seed_bodies(case)):
            for content_type, flags in ((0, 0), (1, 1), (2, 2), (1, 8)):
                data = encode_input(index, content_type, flags, body)
                (directory / f"{case.name.replace(':', '_')}-{number}-{content_type}-{flags}").write_bytes(data)
                count += 1
    return count


def write_dictionary(path: Path) -> None:
    """A libFuzzer dictionary: JSON tokens and every key and constant of the schemas."""
    tokens = {'"', "{", "}", "[", "]", ":", ",", "null", "true", "false", "NaN", "Infinity", "-1", "1e999", "\\ud800"}
    for case in cases():
        tokens.update(_hints(case.schema))

        def walk(node: Any) -> None:
            if isinstance(node, Mapping):
                for key, value in node.get("properties", {}).items():
                    tokens.add(json.dumps(key))
                    walk(value)
                for value in node.values():
                    if isinstance(value, Mapping | list):
                        walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(case.schema)
    lines = []
    for token in sorted(tokens):
        escaped = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else f"\\x{ord(c):02x}" for c in token)
        if all(ord(c) < 256 for c in token):
            lines.append(f'"{escaped}"')
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str]) -> None:
    import atheris

    with atheris.instrument_imports(include=["hfasgi"]):
        import hfasgi.body
        import hfasgi.context
        import hfasgi.validation.engine
        import hfasgi.validation.media
        import hfasgi.validation.middleware  # noqa: F401
    check = harness().check

    def target(data: bytes) -> None:
        check(data)

    atheris.Setup(argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
