"""Round-trip properties of the TGI ⇄ OpenAI completions translations (hypothesis)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hfasgi.operations import Route
from hfasgi.reformat.generation import completions_to_tgi, tgi_to_completions
from tests.reformat.test_generation import MODEL, OPENAI, ROUTER, make_request, roundtrip, run_stream
from tests.upstream import shapes

#: What both dialects express, TGI parameter name → OpenAI key.
SHARED = {
    "max_new_tokens": "max_tokens",
    "stop": "stop",
    "seed": "seed",
    "temperature": "temperature",
    "top_p": "top_p",
    "frequency_penalty": "frequency_penalty",
}
# Values valid in both dialects: TGI wants temperature > 0 and 0 < top_p < 1, at most 4 stop sequences.
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "max_new_tokens": st.integers(1, 4096),
    "stop": st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=4),
    "seed": st.integers(0, 2**64 - 1),
    "temperature": st.floats(0.01, 10, allow_nan=False),
    "top_p": st.floats(0.01, 0.99, allow_nan=False),
    "frequency_penalty": st.floats(-2, 2, allow_nan=False),
}
PROMPTS = st.text(min_size=1, max_size=40)
PROPERTY = settings(max_examples=200, deadline=None, database=None)


@st.composite
def tgi_requests(draw: st.DrawFn) -> tuple[Route, dict[str, Any], bool]:
    """A TGI request (route, body) and whether its client streams."""
    names = draw(st.lists(st.sampled_from(sorted(SHARED)), unique=True))
    params = {name: draw(VALUES[name]) for name in names}
    route = draw(st.sampled_from([Route.GENERATE, Route.GENERATE_STREAM, Route.COMPAT_GENERATE, Route.TASK]))
    document: dict[str, Any] = {"inputs": draw(PROMPTS), "parameters": params}
    stream = route is Route.GENERATE_STREAM
    if route in (Route.COMPAT_GENERATE, Route.TASK):
        stream = draw(st.booleans())
        document["stream"] = stream
    return route, document, stream


@st.composite
def completions_requests(draw: st.DrawFn) -> dict[str, Any]:
    """An OpenAI completions request using only what TGI also expresses."""
    names = draw(st.lists(st.sampled_from(sorted(SHARED)), unique=True))
    document = {SHARED[name]: draw(VALUES[name]) for name in names}
    return {"model": MODEL, "prompt": draw(PROMPTS), "stream": draw(st.booleans()), **document}


@PROPERTY
@given(tgi_requests())
def test_a_tgi_request_through_completions_and_back_keeps_what_both_dialects_express(
    case: tuple[Route, dict[str, Any], bool],
) -> None:
    route, document, stream = case
    openai_body = tgi_to_completions(make_request(route, roundtrip(document))).body
    back = completions_to_tgi(make_request(Route.COMPLETIONS, roundtrip(openai_body), catalog=ROUTER)).body
    assert back["inputs"] == document["inputs"]
    assert back["stream"] is stream
    params = document["parameters"]
    sampling = any(params.get(k) not in (None, 1.0) for k in ("temperature", "top_p"))
    expected = dict(params)
    if not sampling:  # TGI decodes greedily (temperature 1.0 alone is no warper): greedy there and back
        expected.pop("temperature", None)
        assert openai_body["temperature"] == 0
    assert {k: v for k, v in back["parameters"].items() if k in SHARED} == expected
    assert back["parameters"]["do_sample"] is sampling


@PROPERTY
@given(completions_requests())
def test_a_completions_request_through_tgi_and_back_keeps_what_both_dialects_express(document: dict[str, Any]) -> None:
    tgi_body = completions_to_tgi(make_request(Route.COMPLETIONS, roundtrip(document), catalog=ROUTER)).body
    back = tgi_to_completions(make_request(Route.COMPAT_GENERATE, roundtrip(tgi_body), catalog=OPENAI)).body
    assert back.pop("stream_options", None) == ({"include_usage": True} if document["stream"] else None)
    assert back.pop("logprobs") == 1  # the TGI body asks for details, which ask the upstream for logprobs
    assert back == document


@PROPERTY
@given(
    prompt=PROMPTS,
    n=st.integers(0, 32),
    tf=st.booleans(),
    full=st.booleans(),
    route=st.sampled_from([Route.GENERATE_STREAM, Route.COMPAT_GENERATE]),
)
def test_tgi_clients_get_the_same_text_and_token_count_streamed_or_not(
    prompt: str, n: int, tf: bool, full: bool, route: Route
) -> None:
    params = {"details": True, "return_full_text": full}
    reply = shapes.Reply("cmpl-up", 1, MODEL, "length", shapes.usage(shapes.count_tokens(prompt), n), tf)
    whole_translator = tgi_to_completions(make_request(Route.GENERATE, {"inputs": prompt, "parameters": params}))
    whole = whole_translator.response(roundtrip(shapes.completion(reply, [shapes.expected_generation(prompt, n)])))
    document = {"inputs": prompt, "parameters": params, "stream": True}
    per_event, final = run_stream(
        tgi_to_completions(make_request(route, document)),
        shapes.completion_chunks(reply, [shapes.token_texts(prompt, n)], include_usage=True),
    )
    events = [e for batch in per_event for e in batch] + final
    assert (prompt if full else "") + "".join(e["token"]["text"] for e in events) == whole["generated_text"]
    assert events[-1]["generated_text"] == whole["generated_text"]
    assert events[-1]["details"]["generated_tokens"] == whole["details"]["generated_tokens"] == n
    assert len(events) == max(n, 1) and [e["index"] for e in events] == list(range(1, len(events) + 1))


@PROPERTY
@given(prompt=PROMPTS, n=st.integers(1, 32), finish=st.sampled_from(["length", "eos_token", "stop_sequence"]))
def test_openai_clients_get_the_same_text_and_usage_streamed_or_not(prompt: str, n: int, finish: str) -> None:
    document = {"model": MODEL, "prompt": prompt}
    whole_translator = completions_to_tgi(make_request(Route.COMPLETIONS, document, catalog=ROUTER))
    answer = shapes.tgi_generate_response(prompt, n, details=True, decoder_input_details=True, finish_reason=finish)
    whole = whole_translator.response(roundtrip([answer]))
    streamed = {**document, "stream": True, "stream_options": {"include_usage": True}}
    per_event, final = run_stream(
        completions_to_tgi(make_request(Route.COMPLETIONS, streamed, catalog=ROUTER)),
        shapes.tgi_stream_events(prompt, n, details=True, finish_reason=finish),
    )
    chunks = [c for batch in per_event for c in batch] + final
    text_chunks, usage_chunks = chunks[:-1], chunks[-1:]
    assert "".join(c["choices"][0]["text"] for c in text_chunks) == whole["choices"][0]["text"]
    assert [c["choices"][0]["finish_reason"] for c in text_chunks][-1] == whole["choices"][0]["finish_reason"]
    assert usage_chunks[0]["choices"] == [] and usage_chunks[0]["usage"] == whole["usage"]
