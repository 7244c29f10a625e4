"""Property tests of the validation layer in the reference app, in front of the fake HF upstream, over every route.

For each validated route (chat, completions, embeddings, ``/generate``, ``/generate_stream``, ``/``), each
task of ``TASK_SCHEMAS`` and ``BINARY_TASKS`` (``/models/{id}/pipeline/{task}``) and a task the gateway
cannot name (``/models/{id}``), hypothesis sends arbitrary JSON values, arbitrary bytes under arbitrary
content types, oversized bodies, raw media and "almost valid" bodies (a valid body with one field
broken). Whatever comes in:

* the gateway answers, in time (a hang fails the test), and never with a 5xx;
* every error is the envelope ``{"error": str, "error_type": str}`` (an upstream's own error keeps at
  least ``error``, see ``normalize_error_body``);
* every body the fake upstream received is re-checked with an *independent* engine, the pure-Python
  ``jsonschema`` (Draft 2020-12): a JSON object must satisfy the route's schema, anything else must be
  raw media of the task's kind (``fuzz_target.admissible``);
* a body ``jsonschema`` refuses never reaches the fake and gets a 422 that names a field at (or above,
  or below) the one that was broken; one it accepts is not refused (NaN/infinities and lone surrogates
  aside, see ``fuzz_target.engines_differ``).

The apps run on an event loop of their own in a thread (one per module, lifespan started), so each
hypothesis example is a plain function call and no function-scoped fixture is shared between examples.
Examples are derandomized: CI sees the same inputs every run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hfasgi.app import create_app
from hfasgi.settings import Settings
from tests.asgi_driver import request
from tests.upstream import shapes
from tests.upstream.fake_hf import FakeHF, RecordedRequest
from tests.upstream.fixtures import Upstream
from tests.validation import fuzz_target as ft

LIMIT = 16 * 1024
"""The gateways' ``max_body_bytes``: small, so oversized bodies are cheap to make."""
HANG = 15.0
"""Seconds an exchange may take before it counts as a hang."""
TOKEN = "hf_validation_property_token"
DEFAULT_MODEL = "fake/text-generation"
CASES = ft.cases()
GATEWAY_ERROR_TYPES = ft.GATEWAY_ERROR_TYPES
BARE_MESSAGES = ("must ", "is ", "does not ", "unknown parameters ")
"""How the engine's messages start when they have no field path (an error at the root)."""

FAST = settings(
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


def examples(count: int) -> settings:
    """:data:`FAST` with ``count`` examples."""
    return settings(FAST, max_examples=count)


# --------------------------------------------------------------------------- the gateways


class Gateways:
    """The reference app for each upstream kind (openai, tgi, serverless), served on a private event loop."""

    def __init__(self, upstream: Upstream) -> None:
        self.fake: FakeHF = upstream.fake
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="validation-gateways", daemon=True)
        self.thread.start()
        self.apps: dict[str, Any] = {}
        self._stop = asyncio.Event()
        self._ready = threading.Event()
        self._serving = asyncio.run_coroutine_threadsafe(self._serve(upstream.url), self.loop)
        while not self._ready.wait(0.05):
            if self._serving.done():
                self._serving.result()  # the lifespan failed: raise why
                raise AssertionError("the gateways stopped before they started")

    async def _serve(self, url: str) -> None:
        async with contextlib.AsyncExitStack() as stack:
            for kind in ("openai", "tgi", "serverless", "openai-unvalidated"):
                settings = Settings(
                    validate=not kind.endswith("-unvalidated"),
                    upstream_url=url,
                    upstream_kind=kind.removesuffix("-unvalidated"),
                    hf_token=TOKEN,
                    no_auth=True,
                    default_model=DEFAULT_MODEL,
                    max_body_bytes=LIMIT,
                    upstream_attempts=1,
                    loading_wait=0,
                    upstream_timeout=HANG,
                )
                manager = await stack.enter_async_context(LifespanManager(create_app(settings)))
                self.apps[kind] = manager.app
            self._ready.set()
            await self._stop.wait()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._serving.result(30)
        asyncio.run_coroutine_threadsafe(_cancel_the_rest(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def post(self, case: ft.Case, body: bytes | list[bytes], headers: dict[str, str]) -> Exchange:
        """One request to the gateway serving ``case``; what the client and the fake saw."""
        before = len(self.fake.requests)
        path = case.path(model_for(case))
        headers = {**headers, "x-fake-scenario": "chunks:2"}  # the fake generates 2 tokens, whatever is asked

        async def go() -> tuple[int, dict[bytes, bytes], bytes]:
            async with asyncio.timeout(HANG):
                stream, payload = await request(
                    self.apps[case.kind], "POST", path, body=body, headers=headers, timeout=HANG
                )
            return stream.status, stream.headers, payload

        future = asyncio.run_coroutine_threadsafe(go(), self.loop)
        try:
            status, response_headers, payload = future.result(HANG + 5)
        except (TimeoutError, FutureTimeout):
            future.cancel()
            raise AssertionError(f"the gateway hung on {case.name} {headers!r} {_show(body)}") from None
        received = self.fake.requests[before:]
        return Exchange(case, b"".join(body) if isinstance(body, list) else body, headers, status, payload, received)


async def _cancel_the_rest() -> None:
    """Cancel what a failed exchange left running (so the loop closes clean)."""
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


def model_for(case: ft.Case) -> str:
    """A model the fake serves (its task for the task routes when the fake knows it)."""
    if case.task in shapes.TASKS:
        return f"fake/{case.task}"
    return "fake/text-classification"


@pytest.fixture(scope="module")
def gateways(upstream: Upstream) -> Iterator[Gateways]:
    served = Gateways(upstream)
    try:
        yield served
    finally:
        served.close()


# --------------------------------------------------------------------------- the oracle


@dataclass
class Exchange:
    case: ft.Case
    body: bytes
    headers: dict[str, str]
    status: int
    payload: bytes
    received: list[RecordedRequest]

    def describe(self) -> str:
        return (
            f"{self.case.name} -> {self.status} {self.payload[:300]!r}; sent {self.headers!r} {_show(self.body)}; "
            f"the fake received {len(self.received)} request(s)"
        )


def _show(body: bytes | list[bytes]) -> str:
    data = b"".join(body) if isinstance(body, list) else body
    return f"{len(data)} bytes {data[:400]!r}"


def json_content_type(content_type: str | None) -> bool:
    """A content type under which a JSON route takes its body: none, ``application/json``, ``application/*+json``."""
    if content_type is None or not content_type.strip():
        return True
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def check(exchange: Exchange) -> str:
    """Every property of one exchange; returns its outcome (``forwarded``, ``422``, ``415``...)."""
    case, status, where = exchange.case, exchange.status, exchange.describe()
    assert status < 500, f"a {status} from the gateway (bug): {where}"
    content_type = next((v for k, v in exchange.headers.items() if k.lower() == "content-type"), None)
    if status >= 400:
        envelope = json.loads(exchange.payload)
        assert isinstance(envelope, dict) and isinstance(envelope.get("error"), str), f"not an envelope: {where}"
        if exchange.received:
            assert isinstance(envelope.get("error_type", ""), str), f"a non-string error_type: {where}"
        else:
            assert envelope.get("error_type") in GATEWAY_ERROR_TYPES, f"an unexpected error_type: {where}"
    else:
        assert exchange.received, f"a {status} that did not come from the upstream: {where}"
    for seen in exchange.received:
        why = ft.admissible(case, seen.body, seen.headers.get("content-type"))
        assert why is None, f"{why}: {where}"
        assert seen.headers.get("authorization") == f"Bearer {TOKEN}"
    document = ft.json_object(exchange.body)
    json_path = document is not None and json_content_type(content_type) and len(exchange.body) <= LIMIT
    if json_path and document is not None:
        valid = ft.reference_verdict(case, document)
        if ft.has_lone_surrogate(document):
            assert not exchange.received and status == 422, f"a lone surrogate was not refused: {where}"
            assert "lone surrogate" in json.loads(exchange.payload)["error"], where
        elif valid is False:
            assert not exchange.received and status == 422, f"jsonschema refuses this body: {where}"
            assert json.loads(exchange.payload)["error_type"] == "validation", where
        elif valid is True and not ft.engines_differ(document):
            assert exchange.received, f"refused a body jsonschema accepts: {where}"
            for seen in exchange.received:
                _same_body(exchange, document, seen)
    wrong_type = not json_content_type(content_type) and len(exchange.body) <= LIMIT
    if wrong_type and (case.task is None and not case.raw_passthrough or ft.json_like(exchange.body)):
        assert status == 415 and not exchange.received, f"JSON under {content_type!r} was not refused: {where}"
    if len(exchange.body) > LIMIT:
        assert status == 413 and not exchange.received, f"an oversized body was not refused: {where}"
    if not exchange.received:
        return str(status)
    return "forwarded"


def _same_body(exchange: Exchange, document: dict[str, Any], seen: RecordedRequest) -> None:
    """The upstream got the client's body (the OpenAI routes may set ``model`` to the resolved id)."""
    if seen.body == exchange.body:
        return
    forwarded = json.loads(seen.body)
    assert isinstance(forwarded, dict), exchange.describe()
    assert exchange.case.name in ("chat", "completions", "embeddings"), f"the body was rewritten: {exchange.describe()}"
    assert forwarded.pop("model", None) in (document.pop("model", None), DEFAULT_MODEL), exchange.describe()
    assert json.dumps(forwarded, sort_keys=True) == json.dumps(document, sort_keys=True), exchange.describe()


def names_the_field(message: str, broken: Sequence[str | int], case: ft.Case) -> bool:
    """Whether a 422 message names the broken field, one of its parents (a bare message: the root) or a child."""
    if message.startswith(BARE_MESSAGES) or message in _x_errors(case.name):
        return True
    ancestors = [_field_path(broken[:i]) for i in range(1, len(broken) + 1)]
    if any(message.startswith(path + ": ") for path in ancestors):
        return True
    full = _field_path(broken)
    return bool(full) and message.startswith((full + ".", full + "["))


@cache
def _x_errors(case_name: str) -> frozenset[str]:
    """The schema's own ``x-error`` messages (a root ``anyOf`` says one of them, without a path)."""
    schema = next(c.schema for c in CASES if c.name == case_name)
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("x-error"), str):
                found.add(node["x-error"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return frozenset(found)


def _field_path(parts: Sequence[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# --------------------------------------------------------------------------- strategies


class Drawn:
    """A :class:`fuzz_target.Chooser` whose choices hypothesis draws (so they shrink)."""

    def __init__(self, draw: Callable[[st.SearchStrategy[Any]], Any]) -> None:
        self.draw = draw

    def pick(self, options: Sequence[Any]) -> Any:
        return self.draw(st.sampled_from(list(options)))

    def include(self, key: str) -> bool:
        return bool(self.draw(st.booleans()))

    def size(self, low: int, high: int) -> int:
        return int(self.draw(st.integers(low, high)))

    def integer(self, low: int | None, high: int | None) -> int:
        return int(self.draw(st.integers(low, high)))

    def number(self, low: float | None, high: float | None, exclude_low: bool, exclude_high: bool) -> float:
        floats = st.floats(
            low,
            high,
            allow_nan=False,
            allow_infinity=False,
            exclude_min=exclude_low and low is not None,
            exclude_max=exclude_high and high is not None,
        )
        return float(self.draw(floats))

    def text(self, low: int, high: int | None, pattern: str | None, hints: Sequence[str]) -> str:
        if pattern is not None:
            return str(self.draw(st.from_regex(pattern)))
        fitting = [h for h in hints if len(h) >= low and (high is None or len(h) <= high)]
        plain = st.text(min_size=low, max_size=high if high is not None else low + 12)
        return str(self.draw(st.sampled_from(fitting) | plain if fitting else plain))

    def anything(self) -> Any:
        return self.draw(LEAVES_FINITE)


LEAVES_FINITE = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=False, allow_infinity=False), st.text()
)


@st.composite
def valid_documents(draw: Callable[[st.SearchStrategy[Any]], Any], case: ft.Case) -> Any:
    """A body ``jsonschema`` accepts for ``case``, built from its schema."""
    document = ft.build_instance(case.schema, Drawn(draw))
    assume(ft.reference_validator(case.name).is_valid(document))
    return document


SCHEMA_KEYS = sorted(
    {"messages", "inputs", "parameters", "model", "stream", "max_tokens", "prompt", "input", "options", "role"}
    | {key for case in CASES for key in case.schema.get("properties", {})}
)
ANY_CHARS = st.characters(exclude_categories=())
"""Every code point, lone surrogates included (``json.dumps`` escapes them as ``\\ud800``)."""
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**30, -(10**400), 0, -1]),
    st.floats(),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308, -0.0, 5e-324]),
    st.text(ANY_CHARS, max_size=12),
)
KEYS = st.sampled_from(SCHEMA_KEYS) | st.text(ANY_CHARS, max_size=8)
JSON_VALUES = st.recursive(
    LEAVES,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=5),
    max_leaves=16,
)


def arbitrary_objects(case: ft.Case) -> st.SearchStrategy[Any]:
    """Objects with the route's own keys (and others) holding arbitrary values, or any JSON value at all."""
    own = {key: JSON_VALUES for key in case.schema.get("properties", {})}
    with_own_keys = st.fixed_dictionaries({}, optional={**own, "parameters": JSON_VALUES, "zz_extra": JSON_VALUES})
    return st.one_of(JSON_VALUES, st.dictionaries(KEYS, JSON_VALUES, max_size=6), with_own_keys)


@st.composite
def encoded(draw: Callable[[st.SearchStrategy[Any]], Any], value: Any) -> bytes:
    """``value`` as JSON bytes, NaN tokens and lone surrogates included (escaped, or raw: not UTF-8 then)."""
    if draw(st.booleans()):
        return json.dumps(value, allow_nan=True).encode()
    return json.dumps(value, allow_nan=True, ensure_ascii=False).encode("utf-8", "surrogatepass")


HEADER_CHARS = st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f") | st.just("\t")
CONTENT_TYPES = st.one_of(
    st.none(),
    st.sampled_from([c for c in ft.CONTENT_TYPES if c is not None]),
    st.text(HEADER_CHARS, max_size=40),
)
"""Any header value a server would pass on (no CR, LF or NUL), and the usual suspects."""
MEDIA = st.sampled_from([m for magics in ft.MEDIA_SIGNATURES.values() for m in magics] + [b"\xff\xfb\x90\x00"])
NEAR_MISSES = st.sampled_from(
    [b"\xff\xff\xff", b"\xff\xfe", b"\xff\xf1\xff", b"BM", b"BMW is a car", b"RIFF", b"\x89PN"]
)
"""First bytes that look like a magic number and are not one (an MPEG sync with reserved fields, a bare "BM")."""


def chunked(body: bytes) -> st.SearchStrategy[bytes | list[bytes]]:
    """The body in one message, or cut in chunks (``more_body``)."""
    if len(body) < 2:
        return st.just(body)
    cuts = st.lists(st.integers(1, len(body) - 1), max_size=3, unique=True).map(sorted)
    return st.just(body) | cuts.map(lambda at: [body[i:j] for i, j in zip([0, *at], [*at, len(body)], strict=True)])


@st.composite
def odd_bodies(draw: Callable[[st.SearchStrategy[Any]], Any], case: ft.Case) -> bytes:
    """Bytes of every sort: random, media magic, JSON in other encodings or behind much whitespace, broken JSON."""
    valid = json.dumps(ft.build_instance(case.schema, ft.FirstChooser(False)))
    kind = draw(st.sampled_from(["random", "media", "encoding", "padded", "broken", "digits", "deep", "empty"]))
    if kind == "random":
        return bytes(draw(st.binary(max_size=200)))
    if kind == "media":
        return bytes(draw(MEDIA | NEAR_MISSES)) + bytes(draw(st.binary(max_size=40)))
    if kind == "encoding":
        return valid.encode(draw(st.sampled_from(["utf-16", "utf-16-le", "utf-32", "utf-8-sig", "latin-1"])))
    if kind == "padded":
        text = draw(st.sampled_from([valid, '{"parameters": "not an object"}', "[1]", '"text"']))
        return draw(st.sampled_from([b" ", b"\n", b"\t", b"\r\n", b"\x0c"])) * draw(st.integers(1, 200)) + text.encode()
    if kind == "broken":
        return valid.encode()[: draw(st.integers(0, max(0, len(valid) - 1)))] + bytes(draw(st.binary(max_size=8)))
    if kind == "digits":
        return b'{"inputs": 1' + b"1" * draw(st.integers(4290, 4400)) + b"}"
    if kind == "deep":
        depth = draw(st.integers(900, 3000))
        return b'{"inputs": ' + b"[" * depth + b"]" * depth + b"}"
    return b""


ALMOST = ["wrong-type", "out-of-range", "unknown-parameter", "delete-required", "delete-any", "surrogate", "none"]
WRONG_TYPES: list[Any] = [None, True, 0, -1, 1.5, "x", "", [], [1], {}, {"x": 1}]


@st.composite
def almost_valid(draw: Callable[[st.SearchStrategy[Any]], Any], case: ft.Case) -> tuple[Any, str, list[str | int]]:
    """A valid body with one field broken: ``(body, how, path of the broken field)``."""
    document = draw(valid_documents(case))
    how = draw(st.sampled_from(ALMOST))
    places = list(_places(document))
    if how == "unknown-parameter":
        parameters = document.get("parameters")
        if not isinstance(parameters, dict):
            parameters = document["parameters"] = {}
        parameters["zz_unknown_knob"] = draw(st.sampled_from(WRONG_TYPES))
        return document, how, ["parameters", "zz_unknown_knob"]
    if how == "delete-required":
        required = [["parameters", k] for k in _required(case.schema.get("properties", {}).get("parameters", {}))]
        keyed = [p for p in [[k] for k in case.schema.get("required", [])] + required if _has(document, p)]
        if keyed:
            path = draw(st.sampled_from(keyed))
            _parent(document, path).pop(path[-1])
            return document, how, path
        how = "delete-any"
    if how == "delete-any":
        keyed = [p for p, _ in places if p and isinstance(p[-1], str)]
        if keyed:
            path = draw(st.sampled_from(keyed))
            _parent(document, path).pop(path[-1])
            return document, how, path
        return document, "none", []
    if how == "surrogate":
        strings = [p for p, v in places if p and isinstance(v, str)]
        if strings:
            path = draw(st.sampled_from(strings))
            _parent(document, path)[path[-1]] += "\ud800"
            return document, how, path
        return document, "none", []
    if how == "out-of-range":
        numbers = [p for p, v in places if p and isinstance(v, int | float) and not isinstance(v, bool)]
        if numbers:
            path = draw(st.sampled_from(numbers))
            value = draw(st.sampled_from([-1, -(10**9), 10**9, 2**64, 10**30, 0, 1, 0.5, 1e308, -0.5, 3]))
            _parent(document, path)[path[-1]] = value
            return document, how, path
        how = "wrong-type"
    if how == "wrong-type" and places:
        path, current = draw(st.sampled_from(places))
        others = [w for w in WRONG_TYPES if type(w) is not type(current)]
        replacement = draw(st.sampled_from(others))
        if not path:
            return replacement, how, []
        _parent(document, path)[path[-1]] = replacement
        return document, how, path
    return document, "none", []


def _places(value: Any, path: list[str | int] | None = None) -> Iterator[tuple[list[str | int], Any]]:
    path = path or []
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _places(item, [*path, key])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _places(item, [*path, index])


def _required(schema: Any) -> list[str]:
    return list(schema.get("required", [])) if isinstance(schema, dict) else []


def _has(document: Any, path: list[str | int]) -> bool:
    node = document
    for part in path:
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return False
    return True


def _parent(document: Any, path: list[str | int]) -> Any:
    node = document
    for part in path[:-1]:
        node = node[part]
    return node


SIZE_KNOBS = ("dimensions", "top_k")
"""Fields whose value the fake turns into that many items (embedding floats, candidates): kept small."""


def tame(document: Any) -> Any:
    """``document`` with the fake's size knobs (root and ``parameters``) at most 16, so answers stay small.

    The fake generates as many tokens as asked (capped by ``x-fake-scenario: chunks:2``) but builds
    ``dimensions`` floats and ``top_k`` candidates: a valid ``"dimensions": 1000000000`` would take it minutes.
    Its table-question-answering divides by a column's length: empty columns get a cell.
    """
    if isinstance(document, dict):
        inputs = document.get("inputs")
        table = inputs.get("table") if isinstance(inputs, dict) else None
        if isinstance(table, dict):
            inputs["table"] = {k: (v or ["cell"]) if isinstance(v, list) else v for k, v in table.items()}
        for where in (document, document.get("parameters")):
            if isinstance(where, dict):
                for key in SIZE_KNOBS:
                    value = where.get(key)
                    if isinstance(value, int | float) and not isinstance(value, bool) and value > 16:
                        where[key] = 16
    return document


# --------------------------------------------------------------------------- the tests

IDS = [case.name for case in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_almost_valid_bodies_are_refused_with_the_field_and_valid_ones_go_through(
    gateways: Gateways, case: ft.Case
) -> None:
    outcomes: Counter[str] = Counter()
    for full in (False, True):  # the schema's own minimal and complete bodies go through
        document = tame(ft.build_instance(case.schema, ft.FirstChooser(full)))
        exchange = gateways.post(case, json.dumps(document).encode(), {"content-type": "application/json"})
        assert check(exchange) == "forwarded", exchange.describe()

    @examples(30)
    @given(st.data())
    def run(data: st.DataObject) -> None:
        document, how, path = data.draw(almost_valid(case), label="body")
        document = tame(document)
        body = json.dumps(document).encode()
        content_type = data.draw(st.sampled_from(["application/json", "application/json; charset=utf-8"]))
        exchange = gateways.post(case, data.draw(chunked(body)), {"content-type": content_type})
        outcome = check(exchange)
        outcomes[outcome] += 1
        if outcome == "422":
            message = json.loads(exchange.payload)["error"]
            if how != "surrogate":
                assert names_the_field(message, path, case), f"{how} at {path}: {message!r} for {exchange.describe()}"
            outcomes["named"] += 1

    run()
    assert outcomes["forwarded"] >= 1, f"no valid body of {case.name} reached the upstream: {outcomes}"
    assert outcomes["422"] >= 1, f"no broken body of {case.name} was refused: {outcomes}"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_arbitrary_json_never_breaks_the_gateway_nor_reaches_the_upstream_invalid(
    gateways: Gateways, case: ft.Case
) -> None:
    outcomes: Counter[str] = Counter()

    @examples(25)
    @given(st.data())
    def run(data: st.DataObject) -> None:
        value = tame(data.draw(arbitrary_objects(case), label="value"))
        body = data.draw(encoded(value), label="bytes")
        content_type = data.draw(st.sampled_from([None, "application/json"]))
        headers = {"content-type": content_type} if content_type else {}
        outcomes[check(gateways.post(case, body, headers))] += 1

    run()
    assert sum(outcomes.values()) >= 10, outcomes
    assert set(outcomes) - {"forwarded"}, f"nothing was refused on {case.name}: {outcomes}"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_arbitrary_bytes_and_content_types_never_break_the_gateway(gateways: Gateways, case: ft.Case) -> None:
    outcomes: Counter[str] = Counter()

    @examples(25)
    @given(st.data())
    def run(data: st.DataObject) -> None:
        body = data.draw(odd_bodies(case), label="body")
        content_type = data.draw(CONTENT_TYPES, label="content-type")
        headers = {"content-type": content_type} if content_type is not None else {}
        if data.draw(st.booleans()):
            headers["content-length"] = str(len(body))
        outcomes[check(gateways.post(case, data.draw(chunked(body)), headers))] += 1

    run()
    assert outcomes["400"] + outcomes["415"] >= 1, f"no odd body of {case.name} was refused: {outcomes}"


@pytest.mark.parametrize("case", [c for c in CASES if c.media is not None], ids=lambda c: c.name)
def test_raw_media_goes_through_only_when_it_is_the_tasks_kind(gateways: Gateways, case: ft.Case) -> None:
    outcomes: Counter[str] = Counter()
    content_types = st.sampled_from([None, None, "application/octet-stream", "image/png", "audio/wav", "video/mp4"])

    @examples(20)
    @given(MEDIA | NEAR_MISSES, st.binary(max_size=64), content_types)
    def run(magic: bytes, rest: bytes, content_type: str | None) -> None:
        body = magic + rest
        headers = {"content-type": content_type} if content_type else {}
        outcome = check(gateways.post(case, body, headers))
        outcomes[outcome] += 1
        container = body.startswith(b"\x1aE\xdf\xa3") or body[4:8] == b"ftyp"  # WebM, MP4: audio too
        found = ft.media_of(body)
        if found not in (None, case.media) and not (case.media == "audio" and container):
            assert outcome == "415", f"{case.name} took {body[:12]!r} ({content_type})"
        if found is None and ft.declared_kind(content_type) != case.media:
            assert outcome in ("400", "415"), f"{case.name} took {body[:12]!r} ({content_type}) as {case.media}"

    run()
    assert outcomes["forwarded"] >= 1 and outcomes["415"] >= 1, outcomes


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_oversized_bodies_are_refused_before_the_upstream(gateways: Gateways, case: ft.Case) -> None:
    @examples(4)
    @given(st.sampled_from(["padding", "string"]), st.booleans(), st.booleans())
    def run(how: str, declared: bool, chunks: bool) -> None:
        document = ft.build_instance(case.schema, ft.FirstChooser(False))
        if how == "padding":
            body = json.dumps(document).encode() + b" " * LIMIT
        else:
            body = json.dumps({**document, "zz_padding": "x" * LIMIT}).encode()
        headers = {"content-type": "application/json"}
        if declared:
            headers["content-length"] = str(len(body))
        sent: bytes | list[bytes] = [body[:100], body[100 : LIMIT - 10], body[LIMIT - 10 :]] if chunks else body
        exchange = gateways.post(case, sent, headers)
        assert check(exchange) == "413", exchange.describe()
        assert json.loads(exchange.payload)["error_type"] == "payload_too_large"

    run()


@pytest.mark.parametrize("depth", [300, 900, 100_000])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_deeply_nested_bodies_are_refused_not_a_500(gateways: Gateways, case: ft.Case, depth: int) -> None:
    """``jsonschema_rs`` cannot explain an invalid document nested ~300 deep; ``json.loads`` gives up near 1000."""
    key = next(iter(case.schema.get("required", ["inputs"])))
    body = b'{"' + key.encode() + b'": ' + b"[" * depth + b"]" * depth + b"}"
    exchange = gateways.post(case, body, {"content-type": "application/json"})
    outcome = check(exchange)
    assert outcome in ("400", "413", "422") or exchange.received, exchange.describe()


@pytest.mark.parametrize("name", ["chat", "completions", "embeddings"])
def test_forwarder_without_validation_survives_a_lone_surrogate(gateways: Gateways, name: str) -> None:
    case = next(c for c in CASES if c.name == name)
    document = ft.build_instance(case.schema, ft.FirstChooser(False))
    document.pop("model", None)  # the forwarder puts the default model in: it re-encodes the body
    for key in ("messages", "prompt", "input"):
        if key in document:
            document[key] = [{"role": "user", "content": "hi \ud800"}] if key == "messages" else "hi \ud800"
    assert ft.reference_validator(name).is_valid(document) and ft.has_lone_surrogate(document)
    unvalidated = ft.Case(case.name, case.route_path, "openai-unvalidated", case.schema)
    exchange = gateways.post(unvalidated, json.dumps(document).encode(), {"content-type": "application/json"})
    assert exchange.status < 500 or exchange.received, f"the gateway's own 5xx: {exchange.describe()}"


def test_the_validator_refuses_that_lone_surrogate_with_the_field(gateways: Gateways) -> None:
    case = next(c for c in CASES if c.name == "chat")
    body = b'{"messages": [{"role": "user", "content": "hi \\ud800"}]}'
    exchange = gateways.post(case, body, {"content-type": "application/json"})
    assert check(exchange) == "422"
    assert json.loads(exchange.payload) == {
        "error": "messages[0].content: is not valid Unicode (a lone surrogate such as \\ud800)",
        "error_type": "validation",
    }
