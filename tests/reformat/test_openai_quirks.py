"""OpenAI answers made uniform across upstreams: model id, fingerprint, usage chunk rules."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hfasgi.catalog import ModelCatalog
from hfasgi.context import RequestContext, encode_json
from hfasgi.forwarding.upstream import Upstream, UpstreamKind
from hfasgi.operations import Operation, Route
from hfasgi.reformat.base import UNCHANGED, Request
from hfasgi.reformat.openai_quirks import SYSTEM_FINGERPRINT, openai_quirks
from tests.upstream import shapes

CHAT = Operation(Route.CHAT, "chat-completion")
USAGE = shapes.usage(3, 2)


def quirks(document: dict[str, Any], model: str = "org/asked", route: Operation = CHAT) -> Any:
    catalog = ModelCatalog.single(Upstream(kind=UpstreamKind.OPENAI, url="http://up"), default_model="org/default")
    return openai_quirks(Request(route, catalog.resolve(model), route.task, document, RequestContext()))


def reply(*, tf: bool, model: str = "org/asked@main") -> shapes.Reply:
    return shapes.Reply("chatcmpl-1", 1, model, "length", USAGE, tf)


def run_stream(translator: Any, events: list[Any]) -> list[Any]:
    out: list[Any] = []
    for event in events:
        out += translator.event(json.loads(encode_json(event)))
    return out + translator.end()


@pytest.mark.parametrize("tf", [True, False])
def test_a_whole_chat_answer_gets_the_asked_model_and_a_fingerprint(tf: bool) -> None:
    translator = quirks({"model": "org/asked", "messages": []})
    answer = translator.response(shapes.chat_completion(reply(tf=tf), "hello"))
    assert answer["model"] == "org/asked"
    assert answer["system_fingerprint"] == (SYSTEM_FINGERPRINT if tf else shapes.SYSTEM_FINGERPRINT)
    assert answer["choices"][0]["message"]["content"] == "hello" and answer["usage"] == USAGE
    assert translator.client_done and translator.body is UNCHANGED and translator.upstream_op is CHAT


def test_a_placeholder_model_is_answered_as_the_default_model() -> None:
    translator = quirks({"model": "dummy", "messages": []}, model="dummy")
    assert translator.response(shapes.chat_completion(reply(tf=True), "x"))["model"] == "org/default"


@pytest.mark.parametrize("tf", [True, False])
@pytest.mark.parametrize("include_usage", [True, False])
def test_the_usage_chunk_comes_only_when_asked_for(tf: bool, include_usage: bool) -> None:
    body: dict[str, Any] = {"model": "org/asked", "messages": [], "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    events = shapes.chat_chunks(reply(tf=tf), ["a", "b"], include_usage)
    out = run_stream(quirks(body), events)
    usage_chunks = [e for e in out if e["choices"] == []]
    assert [e["usage"] for e in usage_chunks] == ([USAGE] if include_usage else [])
    if include_usage:
        assert out[-1] is usage_chunks[0]  # the usage chunk is the last one
    assert all(e["usage"] is None for e in out if e["choices"])
    assert {e["model"] for e in out} == {"org/asked"}
    assert all(e["system_fingerprint"] for e in out)
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in out if e["choices"])
    assert text == "ab"


def test_transformers_usage_on_the_last_chunk_is_split_off_when_asked_for() -> None:
    body = {"model": "org/asked", "messages": [], "stream": True, "stream_options": {"include_usage": True}}
    last = shapes.chat_chunks(reply(tf=True), ["a"])[-1]
    out = quirks(body).event(last)
    assert [e["choices"] == [] for e in out] == [False, True]
    assert out[0]["choices"][0]["finish_reason"] == "length" and out[0]["usage"] is None
    assert out[1]["usage"] == USAGE


def test_a_second_usage_chunk_is_not_repeated() -> None:
    body = {"model": "org/asked", "messages": [], "stream": True, "stream_options": {"include_usage": True}}
    translator = quirks(body)
    usage_only = {"id": "x", "model": "m", "choices": [], "usage": USAGE}
    assert len(translator.event(dict(usage_only))) == 1
    assert translator.event(dict(usage_only)) == []


def test_completions_and_embeddings_answers_get_the_asked_model() -> None:
    completions = Operation(Route.COMPLETIONS, "text-generation")
    answer = shapes.completion(shapes.Reply("cmpl-1", 1, "other", "stop", USAGE, True), ["x"])
    assert quirks({"prompt": "p"}, route=completions).response(answer)["model"] == "org/asked"
    embeddings = Operation(Route.EMBEDDINGS, "feature-extraction")
    listing = {"object": "list", "data": [], "model": "other", "usage": {"prompt_tokens": 1, "total_tokens": 1}}
    out = quirks({"input": "x"}, route=embeddings).response(listing)
    assert out["model"] == "org/asked" and "system_fingerprint" not in out


def test_the_byte_test_passes_only_answers_that_need_nothing() -> None:
    translator = quirks({"model": "org/asked", "messages": []})
    good = encode_json(shapes.chat_completion(reply(tf=False, model="org/asked"), "x"))
    assert translator.unchanged(good, event=False)
    assert not translator.unchanged(encode_json(shapes.chat_completion(reply(tf=True), "x")), event=False)
    chunk = shapes.chat_chunks(reply(tf=False, model="org/asked"), ["a"])[0]
    assert translator.unchanged(encode_json(chunk), event=True)
    usage_only = {**chunk, "choices": [], "usage": USAGE}
    assert not translator.unchanged(encode_json(usage_only), event=True)
