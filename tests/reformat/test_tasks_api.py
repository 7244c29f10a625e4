"""TasksAPI in process: each provider request becomes the canonical request, each canonical answer the provider's."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from hfasgi.auth import ApiKeyAuth, AuthConfig, KeyRecord, MemoryKeyStore
from hfasgi.body import read_body, replay_receive
from hfasgi.catalog import ModelCatalog, ModelEntry
from hfasgi.context import get_context
from hfasgi.forwarding.upstream import Upstream, UpstreamKind
from hfasgi.operations import Operation, Route
from hfasgi.reformat.tasks_api import TasksAPI, TasksAPIConfig
from hfasgi.validation import RequestValidator, ValidatorConfig
from tests.asgi_driver import open_stream, request
from tests.upstream import shapes
from tests.upstream.shapes import Reply

ROUTER = Upstream(kind=UpstreamKind.ROUTER, url="http://127.0.0.1:1", token="hf_x")
PREFIX = "/hf/tasks/"
LIMIT_HEADERS = [(b"x-ratelimit-limit", b"60"), (b"x-ratelimit-remaining", b"59"), (b"x-request-id", b"req-1")]

Answer = Callable[[Operation, Any], tuple[int, list[tuple[bytes, bytes]], list[bytes]]]


def canonical_answer(op: Operation, doc: Any) -> tuple[int, list[tuple[bytes, bytes]], list[bytes]]:
    """What the gateway's inner layers answer for a canonical request (the fake upstream's shapes)."""
    if op.route is Route.CHAT:
        n = doc.get("max_tokens") or shapes.DEFAULT_TOKENS
        reply = Reply("chatcmpl-1", 1, doc["model"], "length", shapes.usage(3, n))
        answer: Any = shapes.chat_completion(reply, shapes.expected_chat(doc["messages"], n))
    elif op.task == "text-generation":
        n = doc["parameters"].get("max_new_tokens") or shapes.DEFAULT_TOKENS
        answer = [shapes.tgi_generate_response(doc["inputs"], n)]
    else:
        assert op.task is not None
        answer = shapes.run_task(op.task, doc)
    body = json.dumps(answer).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *LIMIT_HEADERS]
    return 200, headers, [body[:7], body[7:]]  # two chunks: the layer must hold the whole answer


class Inner:
    """The gateway behind TasksAPI: records the operation, the canonical body and what `receive` gave it.

    A request carrying a deferred error is answered with it, as the inner layers do once the caller is
    authenticated and counted (recorded in ``deferred``, never in ``seen``).
    """

    def __init__(self, answer: Answer = canonical_answer) -> None:
        self.answer = answer
        self.seen: list[tuple[Operation | None, Any, bytes]] = []
        self.deferred: list[Operation | None] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        ctx = get_context(scope)
        if ctx.deferred_error is not None:
            self.deferred.append(ctx.operation)
            await ctx.deferred_error.send(scope, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        ctx.body = ctx.body if ctx.body is not None else body
        canonical = ctx.operation is not None and ctx.operation.route not in _LOCAL
        document = ctx.json() if canonical else None
        self.seen.append((ctx.operation, document, body))
        if ctx.operation is not None and canonical:
            status, headers, chunks = self.answer(ctx.operation, document)
        else:
            status, headers, chunks = 200, [], [b"own"]  # the app's own route, or a model endpoint
        await send({"type": "http.response.start", "status": status, "headers": headers})
        for i, chunk in enumerate(chunks):
            await send({"type": "http.response.body", "body": chunk, "more_body": i < len(chunks) - 1})


_LOCAL = (Route.TASK_MODELS, Route.TASK_MODEL_MAP, Route.BILLING_USAGE, Route.BILLING_COST)


def catalog(**options: Any) -> ModelCatalog:
    models = options.pop("models", [])
    return ModelCatalog([ROUTER], models, **options)


def make(inner: Inner | None = None, **options: Any) -> tuple[TasksAPI, Inner]:
    inner = inner or Inner()
    config = TasksAPIConfig(catalog=options.pop("catalog", None) or catalog(default_model="org/default"), **options)
    return TasksAPI(inner, config=config), inner


async def post(app: Any, path: str, body: Any, **kwargs: Any) -> tuple[int, dict[bytes, bytes], Any]:
    stream, raw = await request(app, "POST", PREFIX + path, json_body=body, **kwargs)
    return stream.status, stream.headers, json.loads(raw)


# --- the HF task endpoints ----------------------------------------------------------------------------------

TEXT = "The quick brown Fox jumps over the lazy Dog near Paris"
QA = {"question": "Who jumps?", "context": "The quick brown fox jumps"}
SIM = {"source_sentence": "a cat", "sentences": ["a dog", "the cat"]}

TASK_CASES = [
    (
        "summarization",
        {"inputs": TEXT, "parameters": {"min_length": 2, "model": "org/sum"}},
        {"inputs": TEXT, "parameters": {"min_length": 2}},
        {"output": shapes.expected_summarization(TEXT)[0]},
    ),
    (
        "translation",
        {"inputs": "hello world", "parameters": {"src_lang": "en", "tgt_lang": "fr", "model": "org/sum"}},
        {"inputs": "hello world", "parameters": {"src_lang": "en", "tgt_lang": "fr"}},
        {"output": shapes.expected_translation("hello world", "fr")[0]},
    ),
    (
        "question-answering",
        {"inputs": QA, "parameters": {"model": "org/sum"}},
        {"inputs": QA, "parameters": {}},
        {"output": shapes.expected_question_answering(QA["question"], QA["context"])},
    ),
    (
        "text-classification",
        {"inputs": TEXT, "parameters": {"top_k": 1, "model": "org/sum"}},
        {"inputs": TEXT, "parameters": {"top_k": 1}},
        {"output": [shapes.expected_text_classification(TEXT, 1)]},
    ),
    (
        "token-classification",
        {"inputs": TEXT, "parameters": {"model": "org/sum"}},
        {"inputs": TEXT, "parameters": {}},
        {"output": shapes.expected_token_classification(TEXT)},
    ),
    (
        "zero-shot-classification",
        {"inputs": TEXT, "parameters": {"candidate_labels": ["animals", "cities"], "model": "org/sum"}},
        {"inputs": TEXT, "parameters": {"candidate_labels": ["animals", "cities"]}},
        {"output": shapes.expected_zero_shot(TEXT, ["animals", "cities"])},
    ),
    (
        "fill-mask",
        {"inputs": "Paris is the [MASK] of France", "parameters": {"top_k": 2, "model": "org/sum"}},
        {"inputs": "Paris is the [MASK] of France", "parameters": {"top_k": 2}},
        {"output": shapes.expected_fill_mask("Paris is the [MASK] of France", 2)},
    ),
    (
        "sentence-similarity",
        {"inputs": SIM, "parameters": {"model": "org/sum"}},
        {"inputs": SIM, "parameters": {}},
        {"output": shapes.expected_sentence_similarity(SIM["source_sentence"], SIM["sentences"])},
    ),
    (
        "feature-extraction",
        {"inputs": ["one", "two"], "parameters": {"model": "org/sum"}},
        {"inputs": ["one", "two"]},
        {"output": shapes.expected_features(["one", "two"])},
    ),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("task", "body", "canonical", "expected"), TASK_CASES, ids=[c[0] for c in TASK_CASES])
async def test_each_task_endpoint_becomes_the_hf_task_route_and_answers_the_provider_shape(
    task: str, body: dict[str, Any], canonical: dict[str, Any], expected: Any
) -> None:
    app, inner = make()
    status, headers, answer = await post(app, task, body)
    assert status == 200, answer
    [(op, document, received)] = inner.seen
    assert op == Operation(Route.TASK, task, path_model="org/sum", task_forced=True)
    assert document == canonical
    assert json.loads(received) == canonical, "the inner app receives the canonical body, not the provider's"
    assert answer == expected
    assert int(headers[b"content-length"]) == len(json.dumps(answer, separators=(",", ":")).encode())
    for name, value in LIMIT_HEADERS:
        assert headers[name] == value, "rate-limit headers and the request id pass through"


@pytest.mark.anyio
async def test_text_generation_maps_max_tokens_and_keeps_stream_at_the_root() -> None:
    app, inner = make()
    body = {"inputs": "The future of AI is", "parameters": {"max_tokens": 5, "temperature": 0.7, "model": "org/gen"}}
    status, _, answer = await post(app, "text-generation", {**body, "stream": False})
    assert status == 200, answer
    [(op, document, _)] = inner.seen
    assert op == Operation(Route.TASK, "text-generation", path_model="org/gen", task_forced=True)
    assert document == {
        "inputs": "The future of AI is",
        "parameters": {"max_new_tokens": 5, "temperature": 0.7},
        "stream": False,
    }
    assert answer == {"output": [{"generated_text": shapes.expected_generation("The future of AI is", 5)}]}


@pytest.mark.anyio
async def test_embedding_is_feature_extraction_with_its_options_at_the_root() -> None:
    app, inner = make()
    status, _, answer = await post(app, "embedding", {"inputs": "hello", "parameters": {"normalize": True}})
    assert status == 200, answer
    [(op, document, _)] = inner.seen
    assert op == Operation(Route.TASK, "feature-extraction", path_model="org/default", task_forced=True)
    assert document == {"inputs": "hello", "normalize": True}
    assert answer == {"output": shapes.expected_features("hello", normalize=True)}


@pytest.mark.anyio
async def test_a_dict_answer_of_text_generation_is_listed_and_a_list_of_answers_kept() -> None:
    def single(op: Operation, doc: Any) -> tuple[int, list[tuple[bytes, bytes]], list[bytes]]:
        body = {"generated_text": "one"} if op.task == "text-generation" else [{"answer": "a"}, {"answer": "b"}]
        return 200, [(b"content-type", b"application/json; charset=utf-8")], [json.dumps(body).encode()]

    app, _ = make(Inner(single))
    assert (await post(app, "text-generation", {"inputs": "x"}))[2] == {"output": [{"generated_text": "one"}]}
    qa = await post(app, "question-answering", {"inputs": QA, "parameters": {"top_k": 2}})
    assert qa[2] == {"output": [{"answer": "a"}, {"answer": "b"}]}


# --- conversational -----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_conversational_becomes_a_chat_completion_and_answers_the_conversation() -> None:
    app, inner = make()
    body = {
        "text": "What is AI?",
        "past_user_inputs": ["Hello"],
        "generated_responses": ["Hi there!"],
        "parameters": {"model": "org/chat", "max_tokens": 4, "temperature": 0.2, "top_p": 0.9, "seed": 7},
    }
    status, _, answer = await post(app, "conversational", body)
    assert status == 200, answer
    [(op, document, _)] = inner.seen
    assert op == Operation(Route.CHAT, "chat-completion", path_model="org/chat")
    messages = [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi there!"},
        {"role": "user", "content": "What is AI?"},
    ]
    assert document == {
        "model": "org/chat",
        "messages": messages,
        "max_tokens": 4,
        "temperature": 0.2,
        "top_p": 0.9,
        "seed": 7,
    }
    reply = shapes.expected_chat(messages, 4)
    assert answer == {
        "generated_text": reply,
        "conversation": {"past_user_inputs": ["Hello", "What is AI?"], "generated_responses": ["Hi there!", reply]},
    }


@pytest.mark.anyio
async def test_a_first_turn_has_no_history_and_max_new_tokens_is_taken_as_max_tokens() -> None:
    app, inner = make()
    status, _, answer = await post(app, "conversational", {"text": "Hi", "parameters": {"max_new_tokens": 3}})
    assert status == 200, answer
    [(_, document, _)] = inner.seen
    assert document == {"model": "org/default", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}
    reply = shapes.expected_chat(document["messages"], 3)
    assert answer["conversation"] == {"past_user_inputs": ["Hi"], "generated_responses": [reply]}


# --- run ----------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_run_names_the_task_and_the_model_at_the_root() -> None:
    app, inner = make()
    body = {"task": "summarization", "model": "org/sum", "inputs": TEXT, "parameters": {"max_length": 9}}
    status, _, answer = await post(app, "run", body)
    assert status == 200, answer
    [(op, document, _)] = inner.seen
    assert op == Operation(Route.TASK, "summarization", path_model="org/sum", task_forced=True)
    assert document == {"inputs": TEXT, "parameters": {"max_length": 9}}
    assert answer == {"output": shapes.expected_summarization(TEXT)[0]}


@pytest.mark.anyio
async def test_run_serves_conversational_and_embedding_too() -> None:
    app, inner = make()
    conversation = {"text": "And now?", "past_user_inputs": ["Hi"], "generated_responses": ["Hello"]}
    status, _, answer = await post(app, "run", {"task": "conversational", "model": "org/chat", "inputs": conversation})
    assert status == 200, answer
    assert inner.seen[-1][0] == Operation(Route.CHAT, "chat-completion", path_model="org/chat")
    assert answer["conversation"]["past_user_inputs"] == ["Hi", "And now?"]
    status, _, answer = await post(app, "run", {"task": "conversational", "inputs": "Just text"})
    assert status == 200 and inner.seen[-1][1]["messages"] == [{"role": "user", "content": "Just text"}]
    status, _, answer = await post(app, "run", {"task": "embedding", "inputs": "x", "parameters": {"model": "org/e"}})
    assert status == 200 and answer == {"output": shapes.expected_features("x")}
    assert inner.seen[-1][0] == Operation(Route.TASK, "feature-extraction", path_model="org/e", task_forced=True)


# --- models and their default parameters --------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("model", [None, "dummy", ""])
async def test_no_model_means_the_default_model(model: str | None) -> None:
    app, inner = make()
    parameters = {"model": model} if model is not None else {}
    assert (await post(app, "summarization", {"inputs": TEXT, "parameters": parameters}))[0] == 200
    assert inner.seen[0][0] is not None and inner.seen[0][0].path_model == "org/default"


@pytest.mark.anyio
async def test_no_model_and_no_default_model_is_a_400_model_required() -> None:
    app, inner = make(catalog=catalog())
    status, _, error = await post(app, "summarization", {"inputs": TEXT})
    assert (status, error["error_type"]) == (400, "model_required")
    assert "parameters.model" in error["error"] and not inner.seen
    status, _, error = await post(app, "run", {"task": "summarization", "inputs": TEXT})
    assert (status, error["error_type"]) == (400, "model_required") and "'model'" in error["error"]


@pytest.mark.anyio
async def test_a_mapped_models_default_parameters_go_under_the_requests() -> None:
    models = [
        ModelEntry(id="org/gen", task="text-generation", parameters={"temperature": 0.5, "max_tokens": 64}),
        ModelEntry(id="org/chat", task="chat-completion", parameters={"temperature": 0.1, "top_k": 3}),
        ModelEntry(id="org/emb", task="feature-extraction", parameters={"normalize": True, "pooling": "mean"}),
    ]
    app, inner = make(catalog=catalog(models=models))
    await post(app, "text-generation", {"inputs": "x", "parameters": {"model": "org/gen", "temperature": 0.9}})
    assert inner.seen[-1][1]["parameters"] == {"temperature": 0.9, "max_new_tokens": 64}
    await post(app, "text-generation", {"inputs": "x", "parameters": {"model": "org/gen", "max_new_tokens": 8}})
    assert inner.seen[-1][1]["parameters"] == {"temperature": 0.5, "max_new_tokens": 8}
    await post(app, "conversational", {"text": "x", "parameters": {"model": "org/chat:fastest"}})
    assert inner.seen[-1][1]["temperature"] == 0.1 and "top_k" not in inner.seen[-1][1]  # only chat knobs
    await post(app, "embedding", {"inputs": "x", "parameters": {"model": "org/emb"}})
    assert inner.seen[-1][1] == {"inputs": "x", "normalize": True}


# --- bad requests -------------------------------------------------------------------------------------------

BAD = [
    ("summarization", b"{not json", "invalid_json", "not valid JSON"),
    ("summarization", b"[1, 2]", "invalid_request", "JSON object"),
    ("summarization", b"", "invalid_request", "JSON object"),
    ("summarization", {"parameters": {}}, "invalid_request", "'inputs' is required"),
    ("summarization", {"inputs": 3}, "invalid_request", "must be a string"),
    ("embedding", {"inputs": []}, "invalid_request", "non-empty list of strings"),
    ("embedding", {"inputs": "x", "parameters": {"pooling": "cls"}}, "invalid_request", "parameters.pooling"),
    ("question-answering", {"inputs": {"question": "q"}}, "invalid_request", "'context'"),
    ("sentence-similarity", {"inputs": {"source_sentence": "a"}}, "invalid_request", "'sentences'"),
    ("summarization", {"inputs": "x", "parameters": [1]}, "invalid_request", "'parameters' must be an object"),
    ("summarization", {"inputs": "x", "parameters": {"model": 7}}, "invalid_request", "must be a string"),
    ("summarization", {"inputs": "x", "parameters": {"model": "../etc"}}, "invalid_request", "Invalid model id"),
    ("text-generation", {"inputs": "x", "parameters": {"max_tokens": "5"}}, "invalid_request", "max_tokens"),
    ("text-generation", {"inputs": "x", "parameters": {"max_tokens": 0}}, "invalid_request", "positive integer"),
    ("text-generation", {"inputs": "x", "parameters": {"max_tokens": True}}, "invalid_request", "max_tokens"),
    ("text-generation", {"inputs": "x", "parameters": {"temperature": "hot"}}, "invalid_request", "temperature"),
    ("text-generation", {"inputs": "x", "parameters": {"top_p": 2}}, "invalid_request", "top_p"),
    ("text-generation", {"inputs": "x", "parameters": {"seed": -1}}, "invalid_request", "seed"),
    ("text-generation", {"inputs": "x", "stream": "yes"}, "invalid_request", "'stream' must be true or false"),
    ("text-generation", {"inputs": "x", "parameters": {"stream": True}}, "invalid_request", "at the root"),
    (
        "text-generation",
        {"inputs": "x", "parameters": {"max_tokens": 5, "max_new_tokens": 6}},
        "invalid_request",
        "not both",
    ),
    ("summarization", {"inputs": "x", "stream": True}, "invalid_request", "does not stream"),
    ("conversational", {"past_user_inputs": []}, "invalid_request", "'text' is required"),
    ("conversational", {"text": ""}, "invalid_request", "non-empty string"),
    ("conversational", {"text": "x", "past_user_inputs": "hi"}, "invalid_request", "list of strings"),
    (
        "conversational",
        {"text": "x", "past_user_inputs": ["a", "b"], "generated_responses": ["c"]},
        "invalid_request",
        "same length",
    ),
    ("conversational", {"text": "x", "parameters": {"top_k": 3}}, "invalid_request", "parameters.top_k"),
    ("conversational", {"text": "x", "stream": True}, "invalid_request", "does not stream"),
    ("run", {"inputs": "x"}, "invalid_request", "'task' is required"),
    ("run", {"task": "image-generation", "inputs": "x"}, "invalid_request", "Unknown task 'image-generation'"),
    ("run", {"task": "conversational", "inputs": 5}, "invalid_request", "'inputs' must be the text"),
    ("sing-a-song", {"inputs": "x"}, "invalid_request", "Unknown task 'sing-a-song'"),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("path", "body", "error_type", "message"), BAD)
async def test_bad_provider_requests_are_a_clear_400_and_never_reach_the_app(
    path: str, body: Any, error_type: str, message: str
) -> None:
    app, inner = make()
    options: dict[str, Any] = {"body": body} if isinstance(body, bytes) else {"json_body": body}
    stream, raw = await request(app, "POST", PREFIX + path, **options)
    error = json.loads(raw)
    assert stream.status == 400, error
    assert error["error_type"] == error_type and message in error["error"], error["error"]
    assert int(stream.headers[b"content-length"]) == len(raw)
    assert not inner.seen  # no canonical request: the error goes in only to be answered after auth and limits
    assert len(inner.deferred) == 1 and inner.deferred[0] is not None and inner.deferred[0].route is Route.TASK


@pytest.mark.anyio
async def test_a_body_over_the_limit_is_a_413() -> None:
    app, inner = make(max_body_bytes=64)
    stream, raw = await request(app, "POST", PREFIX + "summarization", json_body={"inputs": "x" * 100})
    assert stream.status == 413 and json.loads(raw)["error_type"] == "payload_too_large" and not inner.seen


# --- methods, paths, passthrough ----------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "summarization", b"POST"),
        ("PUT", "run", b"POST"),
        ("POST", "models", b"GET"),
        ("DELETE", "models", b"GET"),
        ("GET", "models/map", b"POST"),
        ("POST", "billing/usage", b"GET"),
        ("GET", "billing/cost", b"POST"),
    ],
)
async def test_other_methods_get_405_with_allow(method: str, path: str, allow: bytes) -> None:
    app, inner = make()
    stream, raw = await request(app, method, PREFIX + path)
    assert stream.status == 405 and stream.headers[b"allow"] == allow
    assert json.loads(raw)["error_type"] == "method_not_allowed" and not inner.seen


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("method", "path", "route"),
    [
        ("GET", "models", Route.TASK_MODELS),
        ("POST", "models/map", Route.TASK_MODEL_MAP),
        ("GET", "billing/usage", Route.BILLING_USAGE),
        ("POST", "billing/cost", Route.BILLING_COST),
    ],
)
async def test_the_model_endpoints_are_marked_and_their_body_left_unread(method: str, path: str, route: Route) -> None:
    app, inner = make()
    stream, raw = await request(app, method, PREFIX + path, json_body={"provider_model_id": "m"}, query=b"x=1")
    assert (stream.status, raw) == (200, b"own")
    [(op, _, received)] = inner.seen
    assert op == Operation(route)
    assert json.loads(received) == {"provider_model_id": "m"}, "the body reaches the layer that answers"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/chat/completions"),
        ("POST", "/hf/tasks"),
        ("POST", PREFIX),
        ("GET", PREFIX + "unknown"),
        ("OPTIONS", PREFIX + "summarization"),
        ("OPTIONS", PREFIX + "models/map"),
    ],
)
async def test_other_paths_and_preflights_pass_through_untouched(method: str, path: str) -> None:
    app, inner = make()
    stream, raw = await request(app, method, path, body=b"raw bytes")
    assert (stream.status, raw) == (200, b"own")
    assert inner.seen == [(None, None, b"raw bytes")]


@pytest.mark.anyio
async def test_lifespan_and_websockets_pass_through() -> None:
    seen: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    app = TasksAPI(inner, config=TasksAPIConfig(catalog=catalog()))

    async def nothing() -> dict[str, Any]:
        return {}

    async def ignore(message: Any) -> None:
        return None

    await app({"type": "lifespan"}, nothing, ignore)
    await app({"type": "websocket", "path": PREFIX + "summarization"}, nothing, ignore)
    assert seen == ["lifespan", "websocket"]


@pytest.mark.anyio
async def test_a_custom_prefix() -> None:
    app, inner = make(prefix="/provider/")
    elsewhere = await request(app, "POST", PREFIX + "summarization", json_body={"inputs": TEXT})
    assert elsewhere[1] == b"own" and inner.seen[-1][0] is None  # under /hf/tasks/: not ours now
    stream, raw = await request(app, "POST", "/provider/summarization", json_body={"inputs": TEXT})
    assert stream.status == 200 and json.loads(raw) == {"output": shapes.expected_summarization(TEXT)[0]}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"prefix": "hf/tasks/"}, "start and end with '/'"),
        ({"prefix": "/hf/tasks"}, "start and end with '/'"),
        ({"prefix": "/hf tasks/"}, "plain path"),
        ({"max_body_bytes": 0}, "max_body_bytes"),
    ],
)
def test_bad_config_fails_at_construction(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TasksAPIConfig(catalog=catalog(), **options)


# --- answers that pass through ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_error_answers_pass_through_untouched() -> None:
    error = b'{"error":"Input validation error: inputs too long","error_type":"validation"}'

    def failing(op: Operation, doc: Any) -> tuple[int, list[tuple[bytes, bytes]], list[bytes]]:
        return 422, [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(error))], [error]

    app, _ = make(Inner(failing))
    stream, raw = await request(app, "POST", PREFIX + "summarization", json_body={"inputs": TEXT})
    assert (stream.status, raw) == (422, error)
    assert stream.headers[b"content-length"] == b"%d" % len(error)


@pytest.mark.anyio
async def test_a_text_generation_stream_passes_through_event_by_event() -> None:
    events = shapes.tgi_stream_events("Once upon", 3)
    gate = asyncio.Event()

    class Streaming(Inner):
        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            self.seen.append((get_context(scope).operation, get_context(scope).json(), b""))
            headers = [(b"content-type", b"text/event-stream"), *LIMIT_HEADERS]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            for i, event in enumerate(events):
                frame = b"data: " + json.dumps(event).encode() + b"\n\n"
                await send({"type": "http.response.body", "body": frame, "more_body": True})
                if i == 0:
                    await gate.wait()  # the first event must reach the client before the rest exists
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    inner = Streaming()
    app, _ = make(inner)
    body = {"inputs": "Once upon", "parameters": {"max_tokens": 3}, "stream": True}
    async with open_stream(app, "POST", PREFIX + "text-generation", json_body=body) as stream:
        assert stream.headers[b"content-type"] == b"text/event-stream"
        assert stream.headers[b"x-ratelimit-remaining"] == b"59"
        first = await stream.chunk()
        assert json.loads(first.removeprefix(b"data: ")) == events[0]
        gate.set()
        rest = await stream.rest()
    assert rest == b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events[1:])
    assert inner.seen[0][1] == {"inputs": "Once upon", "parameters": {"max_new_tokens": 3}, "stream": True}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("task", "answer"),
    [("summarization", b'{"summary": "x"}'), ("conversational", b'{"choices": []}'), ("translation", b"not json")],
)
async def test_an_answer_of_the_wrong_shape_is_a_502_in_the_envelope(task: str, answer: bytes) -> None:
    def odd(op: Operation, doc: Any) -> tuple[int, list[tuple[bytes, bytes]], list[bytes]]:
        return 200, [(b"content-type", b"application/json"), *LIMIT_HEADERS], [answer]

    app, _ = make(Inner(odd))
    body = {"text": "hi"} if task == "conversational" else {"inputs": "hi"}
    stream, raw = await request(app, "POST", PREFIX + task, json_body=body)
    error = json.loads(raw)
    assert stream.status == 502 and error["error_type"] == "upstream_error"
    assert "could not be translated" in error["error"]
    assert stream.headers[b"x-request-id"] == b"req-1"


@pytest.mark.anyio
async def test_a_non_json_or_encoded_success_passes_through() -> None:
    def raw_answer(op: Operation, doc: Any) -> tuple[int, list[tuple[bytes, bytes]], list[bytes]]:
        if doc["inputs"] == "plain":
            return 200, [(b"content-type", b"text/plain")], [b"hello"]
        return 200, [(b"content-type", b"application/json"), (b"content-encoding", b"gzip")], [b"\x1f\x8b"]

    app, _ = make(Inner(raw_answer))
    assert (await request(app, "POST", PREFIX + "summarization", json_body={"inputs": "plain"}))[1] == b"hello"
    assert (await request(app, "POST", PREFIX + "summarization", json_body={"inputs": "gz"}))[1] == b"\x1f\x8b"


@pytest.mark.anyio
async def test_an_answer_the_app_leaves_unfinished_is_a_502_not_silence() -> None:
    async def cut_short(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'[{"summary_te', "more_body": True})

    app = TasksAPI(cut_short, config=TasksAPIConfig(catalog=catalog(default_model="m")))
    stream, raw = await request(app, "POST", PREFIX + "summarization", json_body={"inputs": TEXT})
    assert stream.status == 502 and json.loads(raw)["error_type"] == "upstream_error"


# --- the body, read once ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_chunked_body_arrives_whole() -> None:
    app, inner = make()
    raw = json.dumps({"inputs": TEXT, "parameters": {"model": "org/sum"}}).encode()
    stream, _ = await request(app, "POST", PREFIX + "summarization", body=[raw[:5], raw[5:20], raw[20:]])
    assert stream.status == 200 and inner.seen[0][1] == {"inputs": TEXT, "parameters": {}}


@pytest.mark.anyio
async def test_a_body_an_outer_layer_read_is_replayed_once_as_the_canonical_body() -> None:
    tasks_api, inner = make()

    async def outer(scope: Any, receive: Any, send: Any) -> None:
        await read_body(scope, receive)
        await tasks_api(scope, replay_receive(scope, receive), send)

    stream, _ = await request(outer, "POST", PREFIX + "summarization", json_body={"inputs": TEXT})
    assert stream.status == 200
    assert json.loads(inner.seen[0][2]) == {"inputs": TEXT, "parameters": {}}


# --- with the real inner layers -----------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(("task", "body", "canonical", "expected"), TASK_CASES, ids=[c[0] for c in TASK_CASES])
async def test_the_validator_accepts_every_canonical_body(
    task: str, body: dict[str, Any], canonical: dict[str, Any], expected: Any
) -> None:
    inner = Inner()
    app = TasksAPI(RequestValidator(inner, config=ValidatorConfig()), config=TasksAPIConfig(catalog=catalog()))
    status, _, answer = await post(app, task, body)
    assert status == 200, answer
    assert answer == expected


@pytest.mark.anyio
async def test_the_validator_checks_the_canonical_body_conversational_and_generation_included() -> None:
    inner = Inner()
    app = TasksAPI(RequestValidator(inner, config=ValidatorConfig()), config=TasksAPIConfig(catalog=catalog()))
    ok = await post(app, "conversational", {"text": "hi", "parameters": {"model": "m", "max_tokens": 2}})
    assert ok[0] == 200, ok[2]
    gen = await post(app, "text-generation", {"inputs": "hi", "parameters": {"model": "m", "max_tokens": 2}})
    assert gen[0] == 200, gen[2]
    bad = await post(app, "summarization", {"inputs": "hi", "parameters": {"model": "m", "min_lenght": 2}})
    assert bad[0] == 422 and "min_lenght" in bad[2]["error"]  # the task schema, unchanged, names the field


@pytest.mark.anyio
async def test_auth_scopes_apply_to_the_canonical_operation() -> None:
    key = "hfasgi_summaries-only"
    store = MemoryKeyStore([KeyRecord.for_key("summaries", key, tasks=("summarization",))])
    inner = Inner()
    auth = ApiKeyAuth(inner, config=AuthConfig(store=store))
    app = TasksAPI(auth, config=TasksAPIConfig(catalog=catalog(default_model="org/default")))
    headers = {"x-api-key": key}
    assert (await post(app, "summarization", {"inputs": TEXT}, headers=headers))[0] == 200
    status, _, error = await post(app, "translation", {"inputs": TEXT}, headers=headers)
    assert (status, error["error_type"]) == (403, "permission") and "translation" in error["error"]
    assert (await post(app, "summarization", {"inputs": TEXT}))[0] == 401
    assert (await request(app, "GET", PREFIX + "models", headers=headers))[0].status == 200  # no task scope
    assert (await request(app, "GET", PREFIX + "models"))[0].status == 401  # but a key


@pytest.mark.anyio
async def test_a_bad_provider_request_is_authenticated_before_it_is_refused() -> None:
    """A malformed body from a caller without a key is a 401 (not a 400 that tells strangers about the API)."""
    key = "hfasgi_any-task"
    store = MemoryKeyStore([KeyRecord.for_key("any", key)])
    inner = Inner()
    app = TasksAPI(ApiKeyAuth(inner, config=AuthConfig(store=store)), config=TasksAPIConfig(catalog=catalog()))
    anonymous = await post(app, "summarization", {"parameters": {"model": "m"}})
    assert anonymous[0] == 401 and inner.deferred == []
    known = await post(app, "summarization", {"parameters": {"model": "m"}}, headers={"x-api-key": key})
    assert known[0] == 400 and "inputs" in known[2]["error"] and len(inner.deferred) == 1
    unknown_task = await post(app, "sing-a-song", {"inputs": "x"})
    assert unknown_task[0] == 401
