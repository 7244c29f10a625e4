"""HF task requests served through a chat-completion upstream (hfasgi.reformat.chat_tasks)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hfasgi.catalog import ModelCatalog, ModelEntry
from hfasgi.context import RequestContext
from hfasgi.errors import ErrorType, GatewayError
from hfasgi.forwarding.upstream import Upstream, UpstreamKind
from hfasgi.operations import Operation, Route
from hfasgi.reformat.base import Request, Translator, UpstreamShapeError
from hfasgi.reformat.chat_tasks import CHAT_TASKS, task_via_chat
from tests.upstream.shapes import Reply, chat_chunks, chat_completion, token_texts, usage

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
UPSTREAM = Upstream(kind=UpstreamKind.OPENAI, url="http://x")
CATALOG = ModelCatalog.single(UPSTREAM)
# What transformers serve accepts without a 422 (hf_api.md §4.1), restricted to what the module may send.
CHAT_KEYS = {"model", "messages", "max_tokens", "temperature", "top_p", "seed", "stop", "stream", "stream_options"}


def request(task: str | None, document: Any, *, model: str = MODEL, catalog: ModelCatalog = CATALOG) -> Request:
    op = Operation(Route.TASK, task, path_model=model, task_forced=task is not None)
    return Request(op=op, route=catalog.resolve(model), task=task, document=document, ctx=RequestContext())


def build(task: str | None, document: Any, **kwargs: Any) -> Translator:
    return task_via_chat(request(task, document, **kwargs))


def reply(tf: bool = False, finish: str = "stop", prompt_tokens: int = 7, completion_tokens: int = 3) -> Reply:
    model = MODEL + "@main" if tf else MODEL
    return Reply("chatcmpl-1", 1717586509, model, finish, usage(prompt_tokens, completion_tokens), tf=tf)


def answer(translator: Translator, content: str | None, **kwargs: Any) -> Any:
    document = chat_completion(reply(**kwargs), "")
    document["choices"][0]["message"]["content"] = content
    return translator.response(document)


def messages(translator: Translator) -> list[dict[str, str]]:
    body: dict[str, Any] = translator.body
    return body["messages"]


def gateway_error(task: str | None, document: Any) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        build(task, document)
    assert info.value.status == 400
    return info.value


# --- the upstream request ----------------------------------------------------------------------


def test_the_chat_tasks_are_the_text_tasks_a_chat_reply_can_answer() -> None:
    assert {
        "text-generation",
        "summarization",
        "translation",
        "question-answering",
        "zero-shot-classification",
        "text-classification",
    } == CHAT_TASKS


@pytest.mark.parametrize(
    ("task", "document"),
    [
        ("text-generation", {"inputs": "Once upon a time"}),
        ("summarization", {"inputs": "A long text."}),
        ("translation", {"inputs": "hello", "parameters": {"src_lang": "en", "tgt_lang": "fr"}}),
        ("question-answering", {"inputs": {"question": "Who?", "context": "Ada wrote it."}}),
        ("zero-shot-classification", {"inputs": "I love it", "parameters": {"candidate_labels": ["a", "b"]}}),
        ("text-classification", {"inputs": "I love it", "parameters": {"candidate_labels": ["a", "b"]}}),
    ],
)
def test_every_task_goes_to_the_chat_route_of_the_client_facing_model(task: str, document: Any) -> None:
    translator = build(task, document)
    assert translator.upstream_op == Operation(Route.CHAT, "chat-completion", path_model=MODEL)
    assert translator.client_done is False
    body = translator.body
    assert set(body) <= CHAT_KEYS
    assert list(body)[:2] == ["model", "messages"]
    assert body["model"] == MODEL
    assert body["stream"] is False
    assert "stream_options" not in body


def test_the_body_names_the_upstreams_own_model_id() -> None:
    local = Upstream(name="local", kind=UpstreamKind.OPENAI, url="http://127.0.0.1:8000")
    catalog = ModelCatalog([UPSTREAM, local], [ModelEntry(id="smol", upstream="local", upstream_model="/srv/smol")])
    translator = build("summarization", {"inputs": "text"}, model="smol", catalog=catalog)
    assert translator.body["model"] == "/srv/smol"
    assert translator.upstream_op.path_model == "smol"


def test_text_generation_sends_the_prompt_alone_and_maps_the_tgi_parameters() -> None:
    params = {
        "max_new_tokens": 12,
        "temperature": 0.5,
        "top_p": 0.9,
        "seed": 42,
        "stop": ["\n\n"],
        "top_k": 5,
        "repetition_penalty": 1.1,
        "do_sample": True,
        "details": True,
        "return_full_text": False,
        "watermark": True,
    }
    body = build("text-generation", {"inputs": "Once upon a time", "parameters": params}).body
    assert body == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Once upon a time"}],
        "max_tokens": 12,
        "temperature": 0.5,
        "top_p": 0.9,
        "seed": 42,
        "stop": ["\n\n"],
        "stream": False,
    }


def test_text_generation_stop_as_a_string_becomes_a_list_and_an_empty_one_is_left_out() -> None:
    assert build("text-generation", {"inputs": "x", "parameters": {"stop": "END"}}).body["stop"] == ["END"]
    assert "stop" not in build("text-generation", {"inputs": "x", "parameters": {"stop": []}}).body


def test_provider_style_max_tokens_is_accepted_for_text_generation() -> None:
    body = build("text-generation", {"inputs": "x", "parameters": {"max_tokens": 100, "temperature": 0.7}}).body
    assert (body["max_tokens"], body["temperature"]) == (100, 0.7)
    both = build("text-generation", {"inputs": "x", "parameters": {"max_new_tokens": 5, "max_tokens": 100}}).body
    assert both["max_tokens"] == 5


def test_a_streamed_text_generation_asks_for_usage() -> None:
    body = build("text-generation", {"inputs": "x", "stream": True}).body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert set(body) <= CHAT_KEYS


def test_summarization_instructs_to_summarise_and_maps_max_length() -> None:
    translator = build("summarization", {"inputs": "A long text.", "parameters": {"max_length": 60, "top_k": 3}})
    system, user = messages(translator)
    assert system["role"] == "system"
    assert "summar" in system["content"].lower()
    assert user == {"role": "user", "content": "A long text."}
    assert translator.body["max_tokens"] == 60
    assert "top_k" not in translator.body


def test_summarization_reads_generate_parameters_when_the_legacy_knobs_are_absent() -> None:
    generate = {"max_new_tokens": 40, "temperature": 0.2, "num_beams": 4}
    body = build("summarization", {"inputs": "t", "parameters": {"generate_parameters": generate}}).body
    assert (body["max_tokens"], body["temperature"]) == (40, 0.2)
    assert set(body) <= CHAT_KEYS
    legacy = {"max_length": 10, "generate_parameters": {"max_new_tokens": 40}}
    assert build("summarization", {"inputs": "t", "parameters": legacy}).body["max_tokens"] == 10


def test_translation_names_both_languages() -> None:
    params = {"src_lang": "en", "tgt_lang": "fr", "max_length": 30}
    translator = build("translation", {"inputs": "hello", "parameters": params})
    system, user = messages(translator)
    assert "English (en)" in system["content"]
    assert "French (fr)" in system["content"]
    assert system["content"].index("English") < system["content"].index("French")
    assert user["content"] == "hello"
    assert translator.body["max_tokens"] == 30


def test_translation_uses_unknown_language_codes_as_given() -> None:
    params = {"src_lang": "eng_Latn", "tgt_lang": "fra_Latn"}
    system = messages(build("translation", {"inputs": "hello", "parameters": params}))[0]["content"]
    assert "eng_Latn" in system
    assert "fra_Latn" in system


def test_translation_without_a_source_language_names_only_the_target() -> None:
    system = messages(build("translation", {"inputs": "hello", "parameters": {"tgt_lang": "de"}}))[0]["content"]
    assert "German (de)" in system
    assert " from " not in system


def test_a_transformers_translation_task_name_gives_the_language_pair() -> None:
    system = messages(build("translation_en_to_fr", {"inputs": "hello"}))[0]["content"]
    assert "English (en)" in system
    assert "French (fr)" in system


def test_question_answering_sends_the_context_and_the_question() -> None:
    translator = build("question-answering", {"inputs": {"question": "Who wrote it?", "context": "Ada wrote it."}})
    system, user = messages(translator)
    assert "context" in system["content"].lower()
    assert "Ada wrote it." in user["content"]
    assert "Who wrote it?" in user["content"]


def test_classification_lists_every_candidate_label_in_the_instruction() -> None:
    labels = ["sports", "politics", "cooking"]
    translator = build("zero-shot-classification", {"inputs": "Goal!", "parameters": {"candidate_labels": labels}})
    system, user = messages(translator)
    for label in labels:
        assert f"- {label}" in system["content"]
    assert user["content"] == "Goal!"
    assert set(translator.body) == {"model", "messages", "stream"}


# --- the answers -------------------------------------------------------------------------------


@pytest.mark.parametrize("tf", [False, True])
def test_text_generation_answers_a_list_with_generated_text(tf: bool) -> None:
    translator = build("text-generation", {"inputs": "Hello", "parameters": {}})
    assert answer(translator, " world", tf=tf) == [{"generated_text": " world"}]


def test_return_full_text_puts_the_prompt_first() -> None:
    translator = build("text-generation", {"inputs": "Hello", "parameters": {"return_full_text": True}})
    assert answer(translator, " world") == [{"generated_text": "Hello world"}]


@pytest.mark.parametrize(("finish", "tgi"), [("stop", "eos_token"), ("length", "length"), ("tool_calls", "eos_token")])
def test_text_generation_details_come_from_the_finish_reason_and_usage(finish: str, tgi: str) -> None:
    translator = build("text-generation", {"inputs": "Hi", "parameters": {"details": True, "seed": 3}})
    assert answer(translator, "there", finish=finish, completion_tokens=9) == [
        {
            "generated_text": "there",
            "details": {"finish_reason": tgi, "generated_tokens": 9, "seed": 3, "prefill": [], "tokens": []},
        }
    ]


def test_a_null_content_is_an_empty_text_and_reasoning_is_ignored() -> None:
    translator = build("text-generation", {"inputs": "Hi"})
    document = chat_completion(reply(), "")
    document["choices"][0]["message"] = {"role": "assistant", "content": None, "reasoning_content": "hmm"}
    assert translator.response(document) == [{"generated_text": ""}]


def test_content_parts_are_joined() -> None:
    translator = build("summarization", {"inputs": "t"})
    parts = [{"type": "text", "text": "Short"}, {"type": "text", "text": " summary."}]
    assert answer(translator, parts) == [{"summary_text": "Short summary."}]  # type: ignore[arg-type]


@pytest.mark.parametrize("tf", [False, True])
def test_summarization_and_translation_answer_lists(tf: bool) -> None:
    summary = build("summarization", {"inputs": "A long text."})
    assert answer(summary, "  Short.\n", tf=tf) == [{"summary_text": "Short."}]
    translation = build("translation", {"inputs": "hello", "parameters": {"src_lang": "en", "tgt_lang": "fr"}})
    assert answer(translation, "bonjour", tf=tf) == [{"translation_text": "bonjour"}]


def test_question_answering_locates_a_verbatim_answer_in_the_context() -> None:
    context = "The Analytical Engine was described by Ada Lovelace in 1843."
    translator = build("question-answering", {"inputs": {"question": "Who?", "context": context}})
    result = answer(translator, " Ada Lovelace\n")
    start = context.index("Ada Lovelace")
    assert result == {"answer": "Ada Lovelace", "score": 1.0, "start": start, "end": start + len("Ada Lovelace")}
    assert context[result["start"] : result["end"]] == result["answer"]


def test_question_answering_finds_a_quoted_answer_or_one_ending_with_a_full_stop() -> None:
    context = "It was written in 1843, in London."
    translator = build("question-answering", {"inputs": {"question": "When?", "context": context}})
    for reply_text in ('"1843"', "1843.", "`1843`"):
        result = answer(translator, reply_text)
        assert result["answer"] == "1843"
        assert result["score"] == 1.0
        assert context[result["start"] : result["end"]] == "1843"


@pytest.mark.parametrize("reply_text", ["Charles Babbage", "", None])
def test_question_answering_scores_zero_for_an_answer_not_in_the_context(reply_text: str | None) -> None:
    translator = build("question-answering", {"inputs": {"question": "Who?", "context": "Ada wrote it."}})
    text = (reply_text or "").strip()
    assert answer(translator, reply_text) == {"answer": text, "score": 0.0, "start": 0, "end": len(text)}


@pytest.mark.parametrize("reply_text", ["politics", "Politics", " POLITICS.\n", '"politics"'])
def test_zero_shot_puts_the_named_label_first(reply_text: str) -> None:
    labels = ["sports", "politics", "cooking"]
    translator = build("zero-shot-classification", {"inputs": "Vote!", "parameters": {"candidate_labels": labels}})
    assert answer(translator, reply_text) == [
        {"label": "politics", "score": 1.0},
        {"label": "sports", "score": 0.0},
        {"label": "cooking", "score": 0.0},
    ]


def test_zero_shot_scores_every_label_zero_when_the_reply_names_none() -> None:
    labels = ["sports", "politics"]
    translator = build("zero-shot-classification", {"inputs": "x", "parameters": {"candidate_labels": labels}})
    assert answer(translator, "I think it is about weather") == [
        {"label": "sports", "score": 0.0},
        {"label": "politics", "score": 0.0},
    ]


def test_zero_shot_accepts_the_legacy_comma_separated_labels() -> None:
    params = {"candidate_labels": "sports, politics ,cooking", "multi_label": False}
    translator = build("zero-shot-classification", {"inputs": "x", "parameters": params})
    assert [item["label"] for item in answer(translator, "cooking")] == ["cooking", "sports", "politics"]


def test_text_classification_with_labels_answers_a_list_of_one_list() -> None:
    labels = ["POSITIVE", "NEGATIVE"]
    translator = build("text-classification", {"inputs": "awful", "parameters": {"candidate_labels": labels}})
    assert answer(translator, "negative") == [
        [{"label": "NEGATIVE", "score": 1.0}, {"label": "POSITIVE", "score": 0.0}]
    ]


@pytest.mark.parametrize(
    "document",
    [
        [],
        "text",
        {},
        {"choices": []},
        {"choices": {}},
        {"choices": ["x"]},
        {"choices": [{"index": 0}]},
        {"choices": [{"index": 0, "message": "hi"}]},
        {"choices": [{"index": 0, "message": {"role": "assistant", "content": 3}}]},
    ],
)
def test_a_malformed_chat_answer_is_an_upstream_shape_error(document: Any) -> None:
    for translator in (
        build("text-generation", {"inputs": "x"}),
        build("summarization", {"inputs": "x"}),
        build("question-answering", {"inputs": {"question": "q", "context": "c"}}),
        build("zero-shot-classification", {"inputs": "x", "parameters": {"candidate_labels": ["a"]}}),
    ):
        with pytest.raises(UpstreamShapeError):
            translator.response(document)


# --- the stream --------------------------------------------------------------------------------


def stream(translator: Translator, chunks: list[Any]) -> tuple[list[list[Any]], list[Any]]:
    """Feed ``chunks``: the client events each chunk produced, and those of ``end()``."""
    return [translator.event(chunk) for chunk in chunks], translator.end()


@pytest.mark.parametrize("tf", [False, True])
@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize("details", [False, True])
def test_a_chat_stream_becomes_tgi_token_events(tf: bool, include_usage: bool, details: bool) -> None:
    prompt = "Tell me a story"
    tokens = token_texts(prompt, 5)
    r = reply(tf=tf, finish="length", prompt_tokens=11, completion_tokens=5)
    document = {"inputs": prompt, "parameters": {"details": details, "seed": 7, "max_new_tokens": 5}, "stream": True}
    translator = build("text-generation", document)
    per_chunk, last = stream(translator, chat_chunks(r, tokens, include_usage=include_usage))
    events = [e for out in per_chunk for e in out] + last
    assert [e["index"] for e in events] == [1, 2, 3, 4, 5]
    assert [e["token"] for e in events] == [{"id": 0, "text": t, "logprob": 0.0, "special": False} for t in tokens]
    assert all(e["generated_text"] is None and e["details"] is None for e in events[:-1])
    assert len(last) == 1
    assert last[0]["generated_text"] == "".join(tokens)
    if details:
        usage_seen = tf or include_usage
        assert last[0]["details"] == {
            "finish_reason": "length",
            "generated_tokens": 5,
            "seed": 7,
            "input_length": 11 if usage_seen else 0,
        }
    else:
        assert last[0]["details"] is None


@pytest.mark.parametrize("tf", [False, True])
def test_the_stream_holds_back_exactly_one_token_event(tf: bool) -> None:
    tokens = ["Once", " upon", " a", " time"]
    translator = build("text-generation", {"inputs": "x", "stream": True})
    emitted: list[str] = []
    seen = 0
    for chunk in chat_chunks(reply(tf=tf), tokens, include_usage=True):
        out = translator.event(chunk)
        emitted += [e["token"]["text"] for e in out]
        delta = chunk["choices"][0]["delta"] if chunk["choices"] else {}
        if delta.get("content"):
            seen += 1
            assert emitted == tokens[: seen - 1]  # everything but the newest token is out
        else:
            assert out == []  # role-only, finish-only and usage-only chunks carry no token
    assert seen == len(tokens)
    assert [e["token"]["text"] for e in translator.end()] == [tokens[-1]]


def test_events_come_out_before_the_stream_ends() -> None:
    translator = build("text-generation", {"inputs": "x", "stream": True})
    chunks = chat_chunks(reply(), ["a", "b", "c"])
    assert translator.event(chunks[0]) == []
    assert [e["token"]["text"] for e in translator.event(chunks[1])] == ["a"]
    assert [e["token"]["text"] for e in translator.event(chunks[2])] == ["b"]


def test_a_streamed_full_text_starts_with_the_prompt() -> None:
    document = {"inputs": "Hello", "parameters": {"return_full_text": True}, "stream": True}
    translator = build("text-generation", document)
    per_chunk, last = stream(translator, chat_chunks(reply(tf=True), [" big", " world"]))
    assert last[0]["generated_text"] == "Hello big world"
    assert [e["token"]["text"] for out in per_chunk for e in out] == [" big"]


def test_a_stream_finishing_on_stop_reports_eos_and_counts_tokens_without_usage() -> None:
    document = {"inputs": "x", "parameters": {"details": True}, "stream": True}
    translator = build("text-generation", document)
    _, last = stream(translator, chat_chunks(reply(finish="stop"), ["a", "b", "c"]))
    assert last[0]["details"] == {"finish_reason": "eos_token", "generated_tokens": 3, "seed": None, "input_length": 0}


def test_a_stream_without_content_still_ends_with_one_event_carrying_the_text() -> None:
    document = {"inputs": "x", "parameters": {"details": True}, "stream": True}
    translator = build("text-generation", document)
    per_chunk, last = stream(translator, chat_chunks(reply(tf=True, completion_tokens=0), []))
    assert per_chunk == [[], []]
    assert last == [
        {
            "index": 1,
            "token": {"id": 0, "text": "", "logprob": 0.0, "special": False},
            "generated_text": "",
            "details": {"finish_reason": "eos_token", "generated_tokens": 0, "seed": None, "input_length": 7},
        }
    ]


def test_reasoning_deltas_are_not_tokens() -> None:
    translator = build("text-generation", {"inputs": "x", "stream": True})
    head = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": MODEL}
    assert translator.event({**head, "choices": [{"index": 0, "delta": {"reasoning_content": "hmm"}}]}) == []
    assert translator.event({**head, "choices": [{"index": 0, "delta": {"content": "ok"}}]}) == []
    assert [e["generated_text"] for e in translator.end()] == ["ok"]


@pytest.mark.parametrize("chunk", [[], "x", {"choices": {"index": 0}}, {"choices": ["x"]}, {"choices": [{"delta": 1}]}])
def test_a_malformed_stream_chunk_is_an_upstream_shape_error(chunk: Any) -> None:
    translator = build("text-generation", {"inputs": "x", "stream": True})
    with pytest.raises(UpstreamShapeError):
        translator.event(chunk)


@settings(max_examples=60, deadline=None)
@given(
    tokens=st.lists(st.text(min_size=1, max_size=8), max_size=12),
    tf=st.booleans(),
    include_usage=st.booleans(),
)
def test_streamed_token_texts_concatenate_to_the_non_streamed_answer(
    tokens: list[str], tf: bool, include_usage: bool
) -> None:
    r = reply(tf=tf)
    content = "".join(tokens)
    whole = build("text-generation", {"inputs": "p"}).response(chat_completion(r, content))
    translator = build("text-generation", {"inputs": "p", "stream": True})
    per_chunk, last = stream(translator, chat_chunks(r, tokens, include_usage=include_usage))
    events = [e for out in per_chunk for e in out] + last
    assert "".join(e["token"]["text"] for e in events) == content == whole[0]["generated_text"]
    assert last[0]["generated_text"] == whole[0]["generated_text"]
    assert [e["index"] for e in events] == list(range(1, max(len(tokens), 1) + 1))


# --- what a chat model cannot serve ------------------------------------------------------------


@pytest.mark.parametrize("task", ["fill-mask", "token-classification", "feature-extraction", "text-to-image", None])
def test_other_tasks_need_a_task_model(task: str | None) -> None:
    error = gateway_error(task, {"inputs": "x"})
    assert error.error_type == ErrorType.UNSUPPORTED_OPERATION
    assert "catalog" in error.message
    if task:
        assert task in error.message


def test_text_classification_without_labels_needs_a_classification_model() -> None:
    error = gateway_error("text-classification", {"inputs": "x", "parameters": {"top_k": 2}})
    assert error.error_type == ErrorType.UNSUPPORTED_OPERATION
    assert "text-classification model" in error.message
    assert "candidate_labels" in error.message


@pytest.mark.parametrize(
    ("task", "document"),
    [
        ("summarization", {"inputs": "x", "stream": True}),
        ("translation", {"inputs": "x", "parameters": {"tgt_lang": "fr"}, "stream": True}),
        ("question-answering", {"inputs": {"question": "q", "context": "c"}, "stream": True}),
        ("zero-shot-classification", {"inputs": "x", "parameters": {"candidate_labels": ["a"]}, "stream": True}),
    ],
)
def test_only_text_generation_streams(task: str, document: Any) -> None:
    error = gateway_error(task, document)
    assert error.error_type == ErrorType.UNSUPPORTED_OPERATION
    assert "stream" in error.message


@pytest.mark.parametrize(
    ("task", "document", "named"),
    [
        ("text-generation", None, "inputs"),
        ("text-generation", ["x"], "inputs"),
        ("text-generation", {"parameters": {}}, "inputs"),
        ("text-generation", {"inputs": ["a", "b"]}, "inputs"),
        ("text-generation", {"inputs": "x", "parameters": []}, "parameters"),
        ("text-generation", {"inputs": "x", "parameters": {"max_new_tokens": "10"}}, "max_new_tokens"),
        ("text-generation", {"inputs": "x", "parameters": {"max_new_tokens": -1}}, "max_new_tokens"),
        ("text-generation", {"inputs": "x", "parameters": {"max_new_tokens": True}}, "max_new_tokens"),
        ("text-generation", {"inputs": "x", "parameters": {"temperature": "hot"}}, "temperature"),
        ("text-generation", {"inputs": "x", "parameters": {"seed": 1.5}}, "seed"),
        ("text-generation", {"inputs": "x", "parameters": {"stop": [1]}}, "stop"),
        ("summarization", {"inputs": 3}, "inputs"),
        ("summarization", {"inputs": "x", "parameters": {"generate_parameters": 1}}, "generate_parameters"),
        ("summarization", {"inputs": "x", "parameters": {"generate_parameters": {"top_p": "a"}}}, "top_p"),
        ("translation", {"inputs": "hello"}, "tgt_lang"),
        ("translation", {"inputs": "hello", "parameters": {"src_lang": "en"}}, "tgt_lang"),
        ("translation", {"inputs": "hello", "parameters": {"tgt_lang": " "}}, "tgt_lang"),
        ("translation", {"inputs": "hello", "parameters": {"tgt_lang": "fr", "src_lang": 1}}, "src_lang"),
        ("question-answering", {"inputs": "Who?"}, "context"),
        ("question-answering", {"inputs": {"question": "Who?"}}, "context"),
        ("question-answering", {"inputs": {"context": "Ada."}}, "question"),
        ("question-answering", {"inputs": {"question": 1, "context": "Ada."}}, "question"),
        ("zero-shot-classification", {"inputs": "x"}, "candidate_labels"),
        ("zero-shot-classification", {"inputs": "x", "parameters": {"candidate_labels": []}}, "candidate_labels"),
        ("zero-shot-classification", {"inputs": "x", "parameters": {"candidate_labels": " , "}}, "candidate_labels"),
        ("zero-shot-classification", {"inputs": "x", "parameters": {"candidate_labels": [1]}}, "candidate_labels"),
        ("text-classification", {"inputs": "x", "parameters": {"candidate_labels": 5}}, "candidate_labels"),
    ],
)
def test_a_body_the_task_cannot_use_is_a_400_naming_what_is_wrong(task: str, document: Any, named: str) -> None:
    error = gateway_error(task, document)
    assert error.error_type == ErrorType.INVALID_REQUEST
    assert named in error.message
