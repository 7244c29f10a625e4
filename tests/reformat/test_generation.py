"""TGI text generation ⇄ OpenAI completions: request bodies, whole answers and streams, both ways."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hfasgi.catalog import ModelCatalog, ModelEntry
from hfasgi.context import RequestContext, encode_json
from hfasgi.errors import ErrorType, GatewayError
from hfasgi.forwarding.upstream import Upstream, UpstreamKind
from hfasgi.operations import Operation, Route
from hfasgi.reformat.base import Request, Translator, UpstreamShapeError
from hfasgi.reformat.generation import completions_to_tgi, tgi_to_completions, tgi_to_task
from hfasgi.reformat.openai_quirks import SYSTEM_FINGERPRINT
from tests.upstream import shapes

MODEL = "org/model"
PROMPT = "Tell me a story"
OPENAI = ModelCatalog.single(Upstream(kind=UpstreamKind.OPENAI, url="http://x"))
ROUTER = ModelCatalog.single(Upstream(kind=UpstreamKind.ROUTER, url="http://x"))
TGI_ROUTES = (Route.GENERATE, Route.GENERATE_STREAM, Route.COMPAT_GENERATE, Route.TASK)
#: Every key of OpenAI's ``CompletionCreateParams`` (transformers serve answers 422 to any other).
OPENAI_COMPLETION_KEYS = frozenset(
    "model prompt best_of echo frequency_penalty logit_bias logprobs max_tokens n presence_penalty seed stop "
    "stream stream_options suffix temperature top_p user".split()
)


def make_request(route: Route, document: Any, *, catalog: ModelCatalog = OPENAI, model: str = MODEL) -> Request:
    """A request on ``route`` for ``model``, as the middleware builds it (task routes carry the model in the path)."""
    ctx = RequestContext()
    ctx.request_id = "req-42"
    if route is Route.TASK:
        op = Operation(Route.TASK, None, path_model=model)
    else:
        op = Operation(route, "text-generation", path_model=None)
    return Request(op, catalog.resolve(model), "text-generation", document, ctx)


def roundtrip(document: Any) -> Any:
    """The document as the middleware hands it over: freshly parsed JSON."""
    return json.loads(encode_json(document))


def run_stream(translator: Translator, events: list[Any]) -> tuple[list[list[Any]], list[Any]]:
    """What ``translator`` emits for each upstream event, and at the end."""
    per_event = [translator.event(roundtrip(event)) for event in events]
    return per_event, translator.end()


def reply(*, tf: bool = False, finish: str = "length", n: int = 4) -> shapes.Reply:
    return shapes.Reply("cmpl-up", 1700000000, MODEL + ("@main" if tf else ""), finish, shapes.usage(4, n), tf)


def gateway_error(excinfo: pytest.ExceptionInfo[GatewayError]) -> tuple[int, str, str]:
    return excinfo.value.status, excinfo.value.error_type, excinfo.value.message


# --- tgi_to_completions: the request ------------------------------------------------------------


def test_a_tgi_request_becomes_an_openai_completions_body() -> None:
    params = {
        "max_new_tokens": 12,
        "stop": ["\n", "END"],
        "seed": 7,
        "temperature": 0.7,
        "top_p": 0.9,
        "frequency_penalty": 0.5,
    }
    translator = tgi_to_completions(make_request(Route.GENERATE, {"inputs": PROMPT, "parameters": params}))
    assert translator.body == {
        "model": MODEL,
        "prompt": PROMPT,
        "max_tokens": 12,
        "stop": ["\n", "END"],
        "seed": 7,
        "temperature": 0.7,
        "top_p": 0.9,
        "frequency_penalty": 0.5,
        "stream": False,
    }
    assert translator.upstream_op == Operation(Route.COMPLETIONS, "text-generation", path_model=MODEL)
    assert translator.client_done is False
    assert translator.ignored == ()


def test_the_body_names_the_upstream_model_and_the_operation_the_client_facing_id() -> None:
    upstream = Upstream(kind=UpstreamKind.OPENAI, url="http://x")
    catalog = ModelCatalog([upstream], [ModelEntry(id="smol", upstream_model="/srv/models/smol")])
    translator = tgi_to_completions(make_request(Route.GENERATE, {"inputs": "hi"}, catalog=catalog, model="smol"))
    assert translator.body["model"] == "/srv/models/smol"
    assert translator.upstream_op.path_model == "smol"


@pytest.mark.parametrize(
    ("route", "body_stream", "streams"),
    [
        (Route.GENERATE, None, False),
        (Route.GENERATE, True, False),
        (Route.GENERATE_STREAM, None, True),
        (Route.GENERATE_STREAM, False, True),
        (Route.COMPAT_GENERATE, None, False),
        (Route.COMPAT_GENERATE, True, True),
        (Route.TASK, False, False),
        (Route.TASK, True, True),
    ],
)
def test_the_client_streams_on_generate_stream_or_with_stream_true_on_compat_and_task_routes(
    route: Route, body_stream: bool | None, streams: bool
) -> None:
    document: dict[str, Any] = {"inputs": PROMPT, "parameters": {"max_new_tokens": 3}}
    if body_stream is not None:
        document["stream"] = body_stream
    body = tgi_to_completions(make_request(route, document)).body
    assert body["stream"] is streams
    if streams:
        assert body["stream_options"] == {"include_usage": True}
    else:
        assert "stream_options" not in body


def test_parameters_completions_cannot_express_are_not_sent_and_are_reported_as_ignored() -> None:
    params = {
        "top_k": 10,
        "decoder_input_details": True,
        "repetition_penalty": 1.2,
        "typical_p": 0.5,
        "watermark": True,
        "truncate": 100,
        "adapter_id": "lora",
        "do_sample": True,
        "top_n_tokens": 3,
        "max_new_tokens": 5,
        "frequency_penalty": None,
    }
    translator = tgi_to_completions(make_request(Route.GENERATE, {"inputs": PROMPT, "parameters": params}))
    assert set(translator.body) <= OPENAI_COMPLETION_KEYS
    assert translator.body["max_tokens"] == 5 and "frequency_penalty" not in translator.body
    expected = ("top_k", "decoder_input_details", "repetition_penalty", "typical_p", "watermark", "truncate")
    assert translator.ignored == (*expected, "adapter_id", "top_n_tokens")
    assert "temperature" not in translator.body  # do_sample: OpenAI samples by default


def test_null_parameters_and_an_empty_stop_list_are_neither_sent_nor_ignored() -> None:
    params: dict[str, Any] = {"top_k": None, "grammar": None, "stop": [], "seed": None, "details": False}
    translator = tgi_to_completions(make_request(Route.GENERATE, {"inputs": PROMPT, "parameters": params}))
    assert translator.body == {"model": MODEL, "prompt": PROMPT, "temperature": 0, "stream": False}
    assert translator.ignored == ()


@pytest.mark.parametrize(("params", "greedy"), [
    ({}, True),
    ({"do_sample": False}, True),
    ({"temperature": 1.0}, True),
    ({"top_p": 0.9}, False),
    ({"top_k": 5}, False),
    ({"typical_p": 0.5}, False),
    ({"temperature": 0.7}, False),
    ({"do_sample": False, "temperature": 0.7}, False),
    ({"do_sample": True}, False),
    (None, False),
])  # fmt: skip
def test_tgi_greedy_decoding_is_temperature_zero(params: dict[str, Any] | None, greedy: bool) -> None:
    """TGI samples only with do_sample or a warper (no parameters at all: do_sample); OpenAI samples unless told 0."""
    document: dict[str, Any] = {"inputs": PROMPT} if params is None else {"inputs": PROMPT, "parameters": params}
    body = tgi_to_completions(make_request(Route.GENERATE, document)).body
    assert (body.get("temperature") == 0) is greedy
    if not greedy:
        assert body.get("temperature") == (params or {}).get("temperature")


@pytest.mark.parametrize(("best_of", "route", "sent", "ignored"), [
    (2, Route.GENERATE, True, False),
    (2, Route.GENERATE_STREAM, False, True),
    (1, Route.GENERATE, False, False),
    (None, Route.GENERATE, False, False),
])  # fmt: skip
def test_best_of_is_sent_only_above_one_and_without_a_stream(
    best_of: int | None, route: Route, sent: bool, ignored: bool
) -> None:
    translator = tgi_to_completions(make_request(route, {"inputs": PROMPT, "parameters": {"best_of": best_of}}))
    assert ("best_of" in translator.body) is sent
    if sent:
        assert translator.body["best_of"] == best_of
    assert ("best_of" in translator.ignored) is ignored


def test_details_ask_the_upstream_for_the_sampled_tokens_logprobs() -> None:
    with_details = tgi_to_completions(make_request(Route.GENERATE, {"inputs": PROMPT, "parameters": {"details": True}}))
    without = tgi_to_completions(make_request(Route.GENERATE, {"inputs": PROMPT, "parameters": {"details": False}}))
    assert with_details.body["logprobs"] == 1 and "logprobs" not in without.body


@pytest.mark.parametrize("route", TGI_ROUTES)
def test_grammar_is_refused_naming_the_upstream_kind_and_the_fix(route: Route) -> None:
    grammar = {"type": "json", "value": {"type": "object"}}
    with pytest.raises(GatewayError) as excinfo:
        tgi_to_completions(make_request(route, {"inputs": PROMPT, "parameters": {"grammar": grammar}}))
    status, error_type, message = gateway_error(excinfo)
    assert (status, error_type) == (400, ErrorType.UNSUPPORTED_OPERATION)
    assert "grammar" in message and "'openai'" in message and "TGI upstream" in message


@pytest.mark.parametrize(
    ("document", "needle"),
    [
        ({"inputs": ""}, "`inputs` must be a non-empty string"),
        ({"inputs": ["a", "b"]}, "`inputs` must be a non-empty string"),
        ({"parameters": {}}, "`inputs` must be a non-empty string"),
        ({"inputs": "x", "parameters": [1]}, "`parameters` must be a JSON object"),
        (["not", "an", "object"], "JSON object"),
        (None, "JSON object"),
    ],
)
def test_bad_tgi_inputs_are_a_clear_400(document: Any, needle: str) -> None:
    with pytest.raises(GatewayError) as excinfo:
        tgi_to_completions(make_request(Route.GENERATE, document))
    status, error_type, message = gateway_error(excinfo)
    assert (status, error_type) == (400, ErrorType.INVALID_REQUEST)
    assert needle in message


# --- tgi_to_completions: whole answers ----------------------------------------------------------


@pytest.mark.parametrize(("route", "wrapped"), [
    (Route.GENERATE, False), (Route.COMPAT_GENERATE, True), (Route.TASK, True),
])  # fmt: skip
@pytest.mark.parametrize("tf", [True, False])
def test_a_completion_becomes_a_generate_response_object_or_a_one_item_list(
    route: Route, wrapped: bool, tf: bool
) -> None:
    text = shapes.expected_generation(PROMPT, 4)
    translator = tgi_to_completions(make_request(route, {"inputs": PROMPT, "parameters": {"max_new_tokens": 4}}))
    answer = translator.response(roundtrip(shapes.completion(reply(tf=tf), [text])))
    assert answer == ([{"generated_text": text}] if wrapped else {"generated_text": text})


@pytest.mark.parametrize("seed", [None, 42])
def test_details_carry_the_finish_reason_token_count_and_seed(seed: int | None) -> None:
    params: dict[str, Any] = {"max_new_tokens": 5, "details": True, "seed": seed}
    translator = tgi_to_completions(make_request(Route.GENERATE, {"inputs": PROMPT, "parameters": params}))
    text = shapes.expected_generation(PROMPT, 5)
    answer = translator.response(roundtrip(shapes.completion(reply(n=5), [text])))
    assert answer == {
        "generated_text": text,
        "details": {"finish_reason": "length", "generated_tokens": 5, "seed": seed, "prefill": [], "tokens": []},
    }


def test_details_tokens_come_from_the_completion_logprobs() -> None:
    translator = tgi_to_completions(make_request(Route.GENERATE, {"inputs": PROMPT, "parameters": {"details": True}}))
    completion = shapes.completion(reply(n=2), ["alpha bravo"])
    completion["choices"][0]["logprobs"] = {
        "tokens": ["alpha", " bravo"],
        "token_logprobs": [-0.25, -1.5],
        "top_logprobs": None,
        "text_offset": [0, 5],
    }
    tokens = translator.response(roundtrip(completion))["details"]["tokens"]
    assert tokens == [
        {"id": 0, "text": "alpha", "logprob": -0.25, "special": False},
        {"id": 0, "text": " bravo", "logprob": -1.5, "special": False},
    ]


@pytest.mark.parametrize(("finish", "stop", "stop_reason", "expected"), [
    ("length", ["x"], None, "length"),
    ("stop", None, None, "eos_token"),
    ("stop", ["END"], None, "stop_sequence"),
    ("stop", ["END"], ("vllm", None), "eos_token"),
    ("stop", ["END"], ("vllm", 50256), "eos_token"),
    ("stop", None, ("vllm", "END"), "stop_sequence"),
])  # fmt: skip
def test_the_tgi_finish_reason_follows_the_documented_rule(
    finish: str, stop: list[str] | None, stop_reason: tuple[str, Any] | None, expected: str
) -> None:
    params: dict[str, Any] = {"details": True, "stop": stop}
    translator = tgi_to_completions(make_request(Route.GENERATE, {"inputs": PROMPT, "parameters": params}))
    completion = shapes.completion(reply(finish=finish), ["some text"])
    if stop_reason is not None:
        completion["choices"][0]["stop_reason"] = stop_reason[1]
    assert translator.response(roundtrip(completion))["details"]["finish_reason"] == expected


@pytest.mark.parametrize("route", [Route.GENERATE, Route.COMPAT_GENERATE, Route.TASK])
def test_return_full_text_puts_the_prompt_before_the_generated_text(route: Route) -> None:
    text = shapes.expected_generation(PROMPT, 3)
    full = tgi_to_completions(make_request(route, {"inputs": PROMPT, "parameters": {"return_full_text": True}}))
    plain = tgi_to_completions(make_request(route, {"inputs": PROMPT}))
    assert "return_full_text" not in full.body
    full_answer, plain_answer = (t.response(roundtrip(shapes.completion(reply(), [text]))) for t in (full, plain))
    if route is not Route.GENERATE:
        full_answer, plain_answer = full_answer[0], plain_answer[0]
    assert full_answer["generated_text"] == PROMPT + text
    assert plain_answer["generated_text"] == text


@pytest.mark.parametrize(
    "answer",
    [[], {"choices": []}, {"choices": "x"}, {"choices": [{"index": 0}]}, {"choices": [{"text": 3}]}, {"object": "x"}],
)
def test_a_completion_without_a_text_choice_is_an_upstream_shape_error(answer: Any) -> None:
    translator = tgi_to_completions(make_request(Route.GENERATE, {"inputs": PROMPT}))
    with pytest.raises(UpstreamShapeError):
        translator.response(answer)


# --- tgi_to_completions: streams ----------------------------------------------------------------


def stream_translator(details: bool = True, **params: Any) -> Any:
    document = {"inputs": PROMPT, "parameters": {"details": details, **params}}
    return tgi_to_completions(make_request(Route.GENERATE_STREAM, document))


@pytest.mark.parametrize(("tf", "include_usage"), [(True, False), (False, True)])
def test_completion_chunks_become_generate_stream_events_and_the_last_one_carries_the_details(
    tf: bool, include_usage: bool
) -> None:
    tokens = shapes.token_texts(PROMPT, 4)
    per_event, final = run_stream(
        stream_translator(seed=3), shapes.completion_chunks(reply(tf=tf), [tokens], include_usage)
    )
    events = [e for batch in per_event for e in batch] + final
    assert [e["index"] for e in events] == [1, 2, 3, 4]
    assert [e["token"] for e in events] == [{"id": 0, "text": t, "logprob": 0.0, "special": False} for t in tokens]
    assert all(e["generated_text"] is None and e["details"] is None for e in events[:-1])
    assert events[-1]["generated_text"] == "".join(tokens)
    assert events[-1]["details"] == {"finish_reason": "length", "generated_tokens": 4, "seed": 3, "input_length": 4}


def test_one_event_is_held_back_and_released_when_the_next_chunk_arrives() -> None:
    tokens = shapes.token_texts(PROMPT, 3)
    per_event, final = run_stream(stream_translator(), shapes.completion_chunks(reply(n=3), [tokens], True))
    texts = [[e["token"]["text"] for e in batch] for batch in per_event]
    assert texts == [[], [tokens[0]], [tokens[1]], []]  # the last chunk is the usage-only one
    assert [e["token"]["text"] for e in final] == [tokens[2]]


def test_without_details_the_last_event_still_has_the_generated_text_and_null_details() -> None:
    tokens = shapes.token_texts(PROMPT, 2)
    per_event, final = run_stream(stream_translator(details=False), shapes.completion_chunks(reply(n=2), [tokens]))
    assert final[0]["generated_text"] == "".join(tokens) and final[0]["details"] is None
    assert sum(len(batch) for batch in per_event) == 1


def test_return_full_text_streams_the_prompt_in_the_last_generated_text_only() -> None:
    tokens = shapes.token_texts(PROMPT, 2)
    per_event, final = run_stream(
        stream_translator(return_full_text=True), shapes.completion_chunks(reply(n=2), [tokens], True)
    )
    assert final[0]["generated_text"] == PROMPT + "".join(tokens)
    assert [e["token"]["text"] for batch in per_event for e in batch] == tokens[:1]


def test_a_finish_chunk_without_text_merges_into_the_held_event() -> None:
    head = {"id": "c", "object": "text_completion", "created": 1, "model": MODEL}
    chunks = [
        {**head, "choices": [{"index": 0, "text": "Hello", "finish_reason": None}]},
        {**head, "choices": [{"index": 0, "text": " world", "finish_reason": None}]},
        {**head, "choices": [{"index": 0, "text": "", "finish_reason": "stop"}]},
        {**head, "choices": [], "usage": shapes.usage(4, 2)},
    ]
    per_event, final = run_stream(stream_translator(stop=["!"]), chunks)
    assert [len(batch) for batch in per_event] == [0, 1, 0, 0]
    assert len(final) == 1 and final[0]["index"] == 2 and final[0]["token"]["text"] == " world"
    assert final[0]["details"]["finish_reason"] == "stop_sequence"
    assert final[0]["details"]["generated_tokens"] == 2


def test_an_empty_stream_still_ends_with_one_event_with_a_token() -> None:
    head = {"id": "c", "object": "text_completion", "created": 1, "model": MODEL}
    chunks = [{**head, "choices": [{"index": 0, "text": "", "finish_reason": "stop"}], "usage": shapes.usage(4, 0)}]
    per_event, final = run_stream(stream_translator(), chunks)
    assert per_event == [[]]
    assert final == [
        {
            "index": 1,
            "token": {"id": 0, "text": "", "logprob": 0.0, "special": False},
            "generated_text": "",
            "details": {"finish_reason": "eos_token", "generated_tokens": 0, "seed": None, "input_length": 4},
        }
    ]


def test_flush_releases_the_held_event_untouched_for_a_stream_that_fails() -> None:
    tokens = shapes.token_texts(PROMPT, 3)
    translator = stream_translator()
    emitted = [e for chunk in shapes.completion_chunks(reply(n=3), [tokens])[:2] for e in translator.event(chunk)]
    flushed = translator.flush()
    assert [e["token"]["text"] for e in emitted + flushed] == tokens[:2]
    assert flushed[0]["generated_text"] is None and flushed[0]["details"] is None
    assert translator.flush() == []


def test_chunks_of_other_choices_are_ignored() -> None:
    first, second = shapes.token_texts(PROMPT, 3), shapes.token_texts("other", 3)
    per_event, final = run_stream(stream_translator(), shapes.completion_chunks(reply(n=3), [first, second], True))
    events = [e for batch in per_event for e in batch] + final
    assert [e["token"]["text"] for e in events] == first
    assert events[-1]["generated_text"] == "".join(first)


def test_stream_tokens_carry_the_upstream_logprobs() -> None:
    head = {"id": "c", "object": "text_completion", "created": 1, "model": MODEL}
    chunks = [
        {**head, "choices": [{"index": 0, "text": "a", "logprobs": {"tokens": ["a"], "token_logprobs": [-0.5]}}]},
        {**head, "choices": [{"index": 0, "text": "b", "logprobs": {"tokens": ["b"], "token_logprobs": [-2.0]}}]},
    ]
    per_event, final = run_stream(stream_translator(), chunks)
    events = [e for batch in per_event for e in batch] + final
    assert [e["token"]["logprob"] for e in events] == [-0.5, -2.0]
    assert final[0]["details"]["generated_tokens"] == 2  # no usage came: the events are counted


@pytest.mark.parametrize("chunk", [[1], {"object": "text_completion"}, {"choices": [{"index": 0, "text": 5}]}])
def test_an_unreadable_completion_chunk_is_an_upstream_shape_error(chunk: Any) -> None:
    with pytest.raises(UpstreamShapeError):
        stream_translator().event(chunk)


# --- completions_to_tgi: the request ------------------------------------------------------------


def completions(document: dict[str, Any]) -> Any:
    return completions_to_tgi(make_request(Route.COMPLETIONS, {"model": MODEL, **document}, catalog=ROUTER))


def test_an_openai_completions_request_becomes_a_task_api_generation_body() -> None:
    translator = completions(
        {
            "prompt": PROMPT,
            "max_tokens": 9,
            "stop": ["\n"],
            "seed": 1,
            "temperature": 0.5,
            "top_p": 0.8,
            "frequency_penalty": -0.5,
        }
    )
    assert translator.body == {
        "inputs": PROMPT,
        "parameters": {
            "max_new_tokens": 9,
            "stop": ["\n"],
            "seed": 1,
            "temperature": 0.5,
            "top_p": 0.8,
            "frequency_penalty": -0.5,
            "do_sample": True,
            "return_full_text": False,
            "details": True,
            "decoder_input_details": True,
        },
        "stream": False,
    }
    assert translator.upstream_op == Operation(Route.TASK, "text-generation", path_model=MODEL, task_forced=True)
    assert translator.client_done is True
    assert translator.ignored == ()


def test_a_streamed_completions_request_asks_no_prefill_and_a_one_item_prompt_list_is_fine() -> None:
    body = completions({"prompt": [PROMPT], "stream": True, "stop": "END"}).body
    assert body["inputs"] == PROMPT and body["stream"] is True
    assert body["parameters"]["stop"] == ["END"]
    assert "decoder_input_details" not in body["parameters"]


def test_openai_defaults_tgi_refuses_are_translated() -> None:
    greedy = completions({"prompt": PROMPT, "temperature": 0, "top_p": 1}).body["parameters"]
    assert greedy["do_sample"] is False
    assert "temperature" not in greedy and "top_p" not in greedy


def test_openai_parameters_tgi_cannot_express_are_reported_as_ignored() -> None:
    translator = completions(
        {"prompt": PROMPT, "presence_penalty": 0.5, "user": "u", "logit_bias": {"1": 2}, "best_of": 2, "stream": True}
    )
    assert translator.ignored == ("presence_penalty", "user", "logit_bias", "best_of")
    assert set(translator.body["parameters"]) == {"do_sample", "return_full_text", "details"}
    assert completions({"prompt": PROMPT, "best_of": 3}).body["parameters"]["best_of"] == 3


@pytest.mark.parametrize(
    ("document", "needle"),
    [
        ({"prompt": ["a", "b"]}, "one prompt"),
        ({"prompt": [[1, 2, 3]]}, "Token-id"),
        ({"prompt": PROMPT, "n": 2}, "`n`"),
        ({"prompt": PROMPT, "suffix": "end"}, "`suffix`"),
        ({"prompt": PROMPT, "echo": True}, "`echo`"),
        ({"prompt": PROMPT, "logprobs": 2}, "`logprobs`"),
    ],
)
def test_what_tgi_cannot_answer_is_refused_as_unsupported(document: dict[str, Any], needle: str) -> None:
    with pytest.raises(GatewayError) as excinfo:
        completions(document)
    status, error_type, message = gateway_error(excinfo)
    assert (status, error_type) == (400, ErrorType.UNSUPPORTED_OPERATION)
    assert needle in message


@pytest.mark.parametrize("document", [{}, {"prompt": 3}, {"prompt": None}])
def test_a_completions_request_without_a_string_prompt_is_a_clear_400(document: dict[str, Any]) -> None:
    with pytest.raises(GatewayError) as excinfo:
        completions(document)
    assert gateway_error(excinfo)[:2] == (400, ErrorType.INVALID_REQUEST)


# --- completions_to_tgi: whole answers and streams ----------------------------------------------


@pytest.mark.parametrize("wrapped", [True, False])
@pytest.mark.parametrize(
    ("finish", "expected"), [("length", "length"), ("eos_token", "stop"), ("stop_sequence", "stop")]
)
def test_a_task_generation_answer_becomes_a_text_completion(wrapped: bool, finish: str, expected: str) -> None:
    translator = completions({"prompt": PROMPT, "max_tokens": 6})
    generated = shapes.tgi_generate_response(PROMPT, 6, details=True, decoder_input_details=True, finish_reason=finish)
    answer = translator.response(roundtrip([generated] if wrapped else generated))
    assert isinstance(answer["created"], int)
    assert answer == {
        "id": "cmpl-req-42",
        "object": "text_completion",
        "created": answer["created"],
        "model": MODEL,
        "system_fingerprint": SYSTEM_FINGERPRINT,
        "choices": [
            {"index": 0, "text": shapes.expected_generation(PROMPT, 6), "logprobs": None, "finish_reason": expected}
        ],
        "usage": shapes.usage(shapes.count_tokens(PROMPT), 6),
    }


@pytest.mark.parametrize("answer", [[], [1], {"details": {}}, {"generated_text": 1}, "text"])
def test_a_generation_answer_without_generated_text_is_an_upstream_shape_error(answer: Any) -> None:
    with pytest.raises(UpstreamShapeError):
        completions({"prompt": PROMPT}).response(answer)


@pytest.mark.parametrize("include_usage", [True, False])
def test_tgi_stream_events_become_text_completion_chunks(include_usage: bool) -> None:
    document: dict[str, Any] = {"prompt": PROMPT, "max_tokens": 3, "stream": True}
    if include_usage:
        document["stream_options"] = {"include_usage": True}
    translator = completions(document)
    events = shapes.tgi_stream_events(PROMPT, 3, details=True, finish_reason="eos_token")
    per_event, final = run_stream(translator, events)
    chunks = [c for batch in per_event for c in batch] + final
    head = {
        "id": "cmpl-req-42",
        "object": "text_completion",
        "created": chunks[0]["created"],
        "model": MODEL,
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }
    texts = shapes.token_texts(PROMPT, 3)
    reasons = [None, None, "stop"]
    expected = [
        {**head, "choices": [{"index": 0, "text": t, "logprobs": None, "finish_reason": r}], "usage": None}
        for t, r in zip(texts, reasons, strict=True)
    ]
    if include_usage:
        expected.append({**head, "choices": [], "usage": shapes.usage(shapes.count_tokens(PROMPT), 3)})
    assert chunks == expected
    assert final == []  # the usage chunk came with TGI's last event already
    assert [len(batch) for batch in per_event] == [1, 1, 2 if include_usage else 1]


def test_special_tokens_stream_as_empty_text() -> None:
    translator = completions({"prompt": PROMPT, "stream": True})
    events = shapes.tgi_stream_events(PROMPT, 2, details=True, finish_reason="eos_token")
    events[-1]["token"] = {"id": 2, "text": "</s>", "logprob": -0.1, "special": True}
    per_event, _ = run_stream(translator, events)
    assert [batch[0]["choices"][0]["text"] for batch in per_event] == [events[0]["token"]["text"], ""]


def test_a_stream_that_ends_without_tgis_last_event_still_gets_its_usage_chunk() -> None:
    translator = completions({"prompt": PROMPT, "stream": True, "stream_options": {"include_usage": True}})
    events = shapes.tgi_stream_events(PROMPT, 3)[:2]
    for event in events:
        translator.event(roundtrip(event))
    assert [c["usage"] for c in translator.end()] == [shapes.usage(0, 2)]
    assert translator.end() == []


@pytest.mark.parametrize("event", [[], {"index": 1}, {"token": "x"}, {"token": {"text": 4, "special": False}}])
def test_an_unreadable_tgi_event_is_an_upstream_shape_error(event: Any) -> None:
    with pytest.raises(UpstreamShapeError):
        completions({"prompt": PROMPT, "stream": True}).event(event)


# --- tgi_to_task ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("route", "stream"), [(Route.GENERATE, False), (Route.GENERATE_STREAM, True)])
def test_tgi_generate_goes_to_the_task_route_with_stream_set_and_return_full_text_off(
    route: Route, stream: bool
) -> None:
    document: dict[str, Any] = {"inputs": PROMPT, "parameters": {"max_new_tokens": 2, "top_k": 5}, "stream": not stream}
    translator = tgi_to_task(make_request(route, document, catalog=ROUTER))
    assert translator.body == {
        "inputs": PROMPT,
        "parameters": {"max_new_tokens": 2, "top_k": 5, "return_full_text": False},
        "stream": stream,
    }
    assert document["stream"] is (not stream) and "return_full_text" not in document["parameters"]
    assert translator.upstream_op == Operation(Route.TASK, "text-generation", path_model=MODEL, task_forced=True)
    assert translator.client_done is False


def test_the_clients_return_full_text_is_kept_and_missing_parameters_get_it_off() -> None:
    kept = tgi_to_task(make_request(Route.GENERATE, {"inputs": "x", "parameters": {"return_full_text": True}}))
    added = tgi_to_task(make_request(Route.GENERATE, {"inputs": "x"}))
    assert kept.body["parameters"] == {"return_full_text": True}
    assert added.body["parameters"] == {"return_full_text": False}


def test_the_task_routes_list_answer_is_unwrapped_for_generate() -> None:
    translator = tgi_to_task(make_request(Route.GENERATE, {"inputs": PROMPT}, catalog=ROUTER))
    generated = shapes.tgi_generate_response(PROMPT, 3, details=True, seed=5)
    assert translator.response(roundtrip([generated])) == generated
    assert translator.response(roundtrip(generated)) == generated
    assert translator.unchanged(encode_json(generated), event=False)
    assert not translator.unchanged(encode_json([generated]), event=False)
    with pytest.raises(UpstreamShapeError):
        translator.response([])


def test_generate_stream_events_pass_through_as_they_are() -> None:
    translator = tgi_to_task(make_request(Route.GENERATE_STREAM, {"inputs": PROMPT}, catalog=ROUTER))
    events = shapes.tgi_stream_events(PROMPT, 3, details=True)
    per_event, final = run_stream(translator, events)
    assert per_event == [[e] for e in events] and final == []
    assert translator.unchanged(encode_json(events[0]), event=True)


def test_a_non_object_tgi_body_is_a_clear_400() -> None:
    with pytest.raises(GatewayError) as excinfo:
        tgi_to_task(make_request(Route.GENERATE, ["x"], catalog=ROUTER))
    assert gateway_error(excinfo)[:2] == (400, ErrorType.INVALID_REQUEST)
