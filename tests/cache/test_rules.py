"""Which requests are cached, and the key: table-driven rules, and properties of the key (hypothesis)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hfasgi.cache.keys import cache_key, canonical_body, family, is_deterministic, refuses_cache, wants_stream
from hfasgi.catalog import ModelCatalog, ModelEntry, ModelRoute
from hfasgi.forwarding.upstream import Upstream, UpstreamKind
from hfasgi.operations import DEFAULT_ROUTES, Operation, Route

ROUTER = Upstream(kind=UpstreamKind.ROUTER, url="http://router.test")
OPENAI = Upstream(name="local", kind=UpstreamKind.OPENAI, url="http://openai.test")
CATALOG = ModelCatalog(
    [ROUTER, OPENAI],
    [
        ModelEntry(id="org/classifier", task="text-classification"),
        ModelEntry(id="org/chatty", task="chat-completion"),
        ModelEntry(id="local/model", upstream="local"),
        ModelEntry(id="org/t5", task="translation_en_to_fr"),
    ],
    default_model="org/default",
)
MESSAGES = [{"role": "user", "content": "hi"}]


def decide(method_path: str, document: Any, model: str | None = None) -> bool:
    """The rule for a request to ``method_path`` with ``document``, the model resolved as the layer does."""
    op = DEFAULT_ROUTES.match("POST", method_path)
    assert op is not None
    named = op.path_model or (document.get("model") if isinstance(document, dict) else None) or model
    route = CATALOG.resolve(named)
    task = op.task if op.task_forced or route.task is None else route.task
    return is_deterministic(op, task, document, route)


CHAT = "/v1/chat/completions"
RULES: list[tuple[str, str, Any, bool]] = [
    # chat: temperature 0 and one choice
    ("chat at temperature 0", CHAT, {"messages": MESSAGES, "temperature": 0}, True),
    ("chat at temperature 0.0", CHAT, {"messages": MESSAGES, "temperature": 0.0}, True),
    (
        "chat with tools at temperature 0",
        CHAT,
        {
            "messages": MESSAGES,
            "temperature": 0,
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": "auto",
        },
        True,
    ),  # fmt: skip
    ("chat, n=1", CHAT, {"messages": MESSAGES, "temperature": 0, "n": 1}, True),
    ("chat streamed at temperature 0", CHAT, {"messages": MESSAGES, "temperature": 0, "stream": True}, True),
    ("chat without temperature (samples at 1)", CHAT, {"messages": MESSAGES}, False),
    ("chat at temperature 0.7", CHAT, {"messages": MESSAGES, "temperature": 0.7}, False),
    ("chat with a seed only", CHAT, {"messages": MESSAGES, "seed": 42}, False),
    ("chat with a seed at temperature 1", CHAT, {"messages": MESSAGES, "seed": 42, "temperature": 1}, False),
    ("chat, n=2 at temperature 0", CHAT, {"messages": MESSAGES, "temperature": 0, "n": 2}, False),
    ("chat, temperature false (a bool is not 0)", CHAT, {"messages": MESSAGES, "temperature": False}, False),
    ("chat, temperature as a string", CHAT, {"messages": MESSAGES, "temperature": "0"}, False),
    # completions
    ("completions at temperature 0", "/v1/completions", {"prompt": "x", "temperature": 0}, True),
    ("completions, best_of 3", "/v1/completions", {"prompt": "x", "temperature": 0, "best_of": 3}, False),
    ("completions sampling", "/v1/completions", {"prompt": "x"}, False),
    # embeddings
    ("embeddings", "/v1/embeddings", {"input": "x", "model": "org/embedder"}, True),
    # TGI: greedy unless do_sample or a warper; no parameters at all means sampling
    ("generate, empty parameters", "/generate", {"inputs": "x", "parameters": {}}, True),
    (
        "generate, max_new_tokens and a seed",
        "/generate",
        {"inputs": "x", "parameters": {"max_new_tokens": 5, "seed": 1}},
        True,
    ),  # fmt: skip
    ("generate, do_sample false", "/generate", {"inputs": "x", "parameters": {"do_sample": False}}, True),
    ("generate, temperature 1.0 is no warper", "/generate", {"inputs": "x", "parameters": {"temperature": 1.0}}, True),
    ("generate without parameters", "/generate", {"inputs": "x"}, False),
    ("generate, parameters null", "/generate", {"inputs": "x", "parameters": None}, False),
    ("generate, do_sample", "/generate", {"inputs": "x", "parameters": {"do_sample": True}}, False),
    ("generate, temperature 0.5", "/generate", {"inputs": "x", "parameters": {"temperature": 0.5}}, False),
    ("generate, top_k", "/generate", {"inputs": "x", "parameters": {"top_k": 10}}, False),
    ("generate, top_p", "/generate", {"inputs": "x", "parameters": {"top_p": 0.9}}, False),
    ("generate, typical_p", "/generate", {"inputs": "x", "parameters": {"typical_p": 0.9}}, False),
    ("generate_stream, greedy", "/generate_stream", {"inputs": "x", "parameters": {}}, True),
    ("TGI /, greedy", "/", {"inputs": "x", "parameters": {"details": True}}, True),
    ("TGI /, sampling", "/", {"inputs": "x", "parameters": {"do_sample": True}}, False),
    # task routes: forced tasks and the catalog's
    ("text-classification (catalog)", "/models/org/classifier", {"inputs": "x"}, True),
    ("feature-extraction (pipeline)", "/models/org/e/pipeline/feature-extraction", {"inputs": "x"}, True),
    (
        "sentence-similarity (legacy pipeline)",
        "/pipeline/sentence-similarity/org/e",
        {"inputs": {"source_sentence": "a", "sentences": ["b"]}},
        True,
    ),  # fmt: skip
    ("token-classification", "/models/o/t/pipeline/token-classification", {"inputs": "x"}, True),
    (
        "zero-shot-classification",
        "/models/o/z/pipeline/zero-shot-classification",
        {"inputs": "x", "parameters": {"candidate_labels": ["a"]}},
        True,
    ),  # fmt: skip
    (
        "question-answering",
        "/models/o/q/pipeline/question-answering",
        {"inputs": {"question": "q", "context": "c"}},
        True,
    ),  # fmt: skip
    ("fill-mask", "/models/o/f/pipeline/fill-mask", {"inputs": "a [MASK]"}, True),
    ("image-classification (base64 JSON)", "/models/o/i/pipeline/image-classification", {"inputs": "aGk="}, True),
    ("image-classification (raw bytes)", "/models/o/i/pipeline/image-classification", None, True),
    ("text-generation task, greedy", "/models/o/g/pipeline/text-generation", {"inputs": "x", "parameters": {}}, True),
    ("text-generation task, no parameters", "/models/o/g/pipeline/text-generation", {"inputs": "x"}, False),
    ("summarization by default", "/models/o/s/pipeline/summarization", {"inputs": "x"}, False),
    (
        "summarization, do_sample false",
        "/models/o/s/pipeline/summarization",
        {"inputs": "x", "parameters": {"generate_parameters": {"do_sample": False}}},
        True,
    ),  # fmt: skip
    (
        "summarization, do_sample true",
        "/models/o/s/pipeline/summarization",
        {"inputs": "x", "parameters": {"generate_parameters": {"do_sample": True}}},
        False,
    ),  # fmt: skip
    (
        "translation, legacy do_sample false",
        "/models/o/t/pipeline/translation",
        {"inputs": "x", "parameters": {"do_sample": False}},
        True,
    ),  # fmt: skip
    (
        "translation_en_to_fr (catalog), do_sample false",
        "/models/org/t5",
        {"inputs": "x", "parameters": {"generate_parameters": {"do_sample": False}}},
        True,
    ),  # fmt: skip
    ("text-to-image", "/models/o/i/pipeline/text-to-image", {"inputs": "a cat", "parameters": {"seed": 1}}, False),
    ("automatic-speech-recognition", "/models/o/a/pipeline/automatic-speech-recognition", None, False),
    ("a model whose task the catalog does not know", "/models/org/unknown", {"inputs": "x"}, False),
    # tasks a chat model serves (through the reformatter) are sampled at its default temperature
    (
        "classification through a chat model",
        "/models/org/chatty/pipeline/zero-shot-classification",
        {"inputs": "x", "parameters": {"candidate_labels": ["a"]}},
        False,
    ),  # fmt: skip
    (
        "summarization through a chat model, do_sample false",
        "/models/org/chatty/pipeline/summarization",
        {"inputs": "x", "parameters": {"generate_parameters": {"do_sample": False}}},
        False,
    ),  # fmt: skip
    (
        "text-generation through a chat model, greedy",
        "/models/org/chatty/pipeline/text-generation",
        {"inputs": "x", "parameters": {}},
        True,
    ),  # fmt: skip
    ("fill-mask on an OpenAI upstream", "/models/local/model/pipeline/fill-mask", {"inputs": "a [MASK]"}, False),
    (
        "feature-extraction on an OpenAI upstream (its embeddings)",
        "/models/local/model/pipeline/feature-extraction",
        {"inputs": "x"},
        True,
    ),  # fmt: skip
]


@pytest.mark.parametrize(("path", "document", "cached"), [pytest.param(*r[1:], id=r[0]) for r in RULES])
def test_the_rule_for_each_route_task_and_parameters(path: str, document: Any, cached: bool) -> None:
    assert decide(path, document) is cached


@pytest.mark.parametrize(
    ("headers", "document", "refused"),
    [
        ([(b"x-use-cache", b"false")], {}, True),
        ([(b"X-Use-Cache", b"False")], {}, True),
        ([(b"x-use-cache", b"0")], {}, True),
        ([(b"x-use-cache", b"true")], {}, False),
        ([], {"options": {"use_cache": False}}, True),
        ([], {"options": {"use_cache": True, "wait_for_model": True}}, False),
        ([(b"x-wait-for-model", b"true")], {}, False),
        ([], None, False),
    ],
)
def test_the_client_can_refuse_the_cache(headers: list[tuple[bytes, bytes]], document: Any, refused: bool) -> None:
    assert refuses_cache(headers, document) is refused


def test_families_share_stream_and_whole_forms() -> None:
    def fam(path: str) -> str:
        op = DEFAULT_ROUTES.match("POST", path)
        assert op is not None
        return family(op, op.task)

    assert fam("/generate") == fam("/generate_stream") == "generate"
    assert fam("/") == "compat_generate"
    assert fam("/v1/chat/completions") == fam("/models/x/v1/chat/completions") == "chat"
    assert fam("/models/x/pipeline/fill-mask") == fam("/pipeline/fill-mask/x") == "task:fill-mask"
    assert wants_stream(Operation(Route.GENERATE_STREAM), {"stream": False})
    assert not wants_stream(Operation(Route.GENERATE), {"stream": True})
    assert wants_stream(Operation(Route.CHAT), {"stream": True})
    assert not wants_stream(Operation(Route.CHAT), {"stream": "yes"})


# --- the key --------------------------------------------------------------------------------------------

ROUTE = ModelRoute("org/m", ROUTER, "org/m", None)
JSON_LEAF = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.floats(allow_nan=False, allow_infinity=False), st.text()
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
BODIES = st.dictionaries(st.text(max_size=10), JSON_VALUE, max_size=6)


def key_of(document: dict[str, Any], scope: str = "alice", fam: str = "chat", route: ModelRoute = ROUTE) -> str:
    body = canonical_body(document, b"")
    assert body is not None
    return cache_key(scope, fam, route, body)


def shuffled(value: Any, seed: int) -> Any:
    """``value`` with every object's keys in another order (lists keep theirs)."""
    if isinstance(value, dict):
        items = list(value.items())
        if items:
            cut = seed % len(items)
            items = items[cut:] + items[:cut]
            items.reverse()
        return {k: shuffled(v, seed + 1) for k, v in items}
    if isinstance(value, list):
        return [shuffled(v, seed + 1) for v in value]
    return value


@settings(max_examples=200, deadline=None)
@given(BODIES, st.integers(0, 100))
def test_the_key_ignores_the_order_of_keys(document: dict[str, Any], seed: int) -> None:
    assert key_of(shuffled(document, seed)) == key_of(document)


@settings(max_examples=200, deadline=None)
@given(
    BODIES,
    st.booleans(),
    st.one_of(st.none(), st.fixed_dictionaries({"include_usage": st.booleans()})),
    st.one_of(st.none(), st.text(max_size=5)),
    st.one_of(st.none(), st.text(max_size=5)),
)
def test_the_key_ignores_how_the_answer_travels(
    document: dict[str, Any], stream: bool, options: Any, user: Any, model: Any
) -> None:
    varied = {**document, "stream": stream}
    if options is not None:
        varied["stream_options"] = options
    if user is not None:
        varied["user"] = user
    if model is not None:
        varied["model"] = model  # the model enters the key as the catalog resolves it, not as written
    plain = {k: v for k, v in document.items() if k not in ("stream", "stream_options", "user", "model")}
    assert key_of(varied) == key_of(plain)


@settings(max_examples=200, deadline=None)
@given(BODIES, st.sampled_from(["temperature", "max_tokens", "messages", "seed", "tools", "inputs", "parameters"]),
       JSON_VALUE)  # fmt: skip
def test_the_key_changes_with_any_answer_changing_field(document: dict[str, Any], name: str, value: Any) -> None:
    changed = {**document, name: value}
    if canonical_body(changed, b"") == canonical_body(document, b""):
        return  # the same document (the field already held that value)
    assert key_of(changed) != key_of(document)


@settings(max_examples=100, deadline=None)
@given(BODIES)
def test_the_key_changes_with_the_scope_the_family_and_the_model(document: dict[str, Any]) -> None:
    base = key_of(document)
    assert key_of(document, scope="bob") != base
    assert key_of(document, fam="completions") != base
    assert key_of(document, route=ModelRoute("org/other", ROUTER, "org/other", None)) != base
    assert key_of(document, route=ModelRoute("org/m", OPENAI, "org/m", None)) != base  # another upstream
    assert key_of(document, route=ModelRoute("org/m", ROUTER, "org/m:groq", None)) != base  # another upstream id


def test_the_legacy_options_are_not_part_of_the_key_but_other_options_are() -> None:
    plain = {"inputs": "x"}
    assert key_of({**plain, "options": {"use_cache": True, "wait_for_model": True}}) == key_of(plain)
    assert key_of({**plain, "options": {"something_else": 1}}) != key_of(plain)


def test_scope_and_family_cannot_run_into_each_other() -> None:
    assert key_of({}, scope="ab", fam="c") != key_of({}, scope="a", fam="bc")


def test_a_raw_body_is_its_own_canonical_form() -> None:
    assert canonical_body(None, b"\x89PNG...") == b"\x89PNG..."
    assert canonical_body({"n": 2**70}, b"") is None  # orjson cannot encode it canonically: not cached
