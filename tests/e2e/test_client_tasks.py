"""The HF task API through the gateway: ``InferenceClient(base_url=f"{gw}/models/{id}")`` and the forced-task
routes ``/models/{id}/pipeline/{task}`` and ``/pipeline/{task}/{id}`` (hf_api.md §2.4, §5.2, §5.4, §8.6-8.7).

HFH posts the task body to the base URL exactly, with no model and no task in it, and parses the reply by
the method's rules (``text_classification`` takes ``[[…]]``, summarization needs a list, table-QA a dict…),
so the wire shape of the upstream's answer must arrive untouched. Served by router and serverless upstreams.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from huggingface_hub import AsyncInferenceClient, InferenceClient

from tests.e2e.clients import like
from tests.upstream import (
    FakeHF,
    expected_features,
    expected_fill_mask,
    expected_question_answering,
    expected_sentence_similarity,
    expected_summarization,
    expected_table_question_answering,
    expected_text_classification,
    expected_token_classification,
    expected_translation,
    expected_zero_shot,
)

pytestmark = pytest.mark.socket

TEXT = "Alice met Bob in Paris yesterday"
MASKED = "Paris is the [MASK] of France"
QUESTION = "Where did they meet?"
LABELS = ["travel", "cooking", "sport"]
TABLE = {"city": ["Paris", "Rome", "Oslo"], "country": ["France", "Italy", "Norway"]}
SENTENCES = ["Alice met Bob", "The weather in Oslo is cold"]
FEATURE_INPUTS = ["first text to embed", "second one"]
PIPELINE_TASKS = ("feature-extraction", "sentence-similarity")
"""The tasks HFH (and so the router) sends to ``/models/{id}/pipeline/{task}`` (hf_api.md §1.4)."""


@dataclass(frozen=True)
class Case:
    """One task call: what the client does, what it must return, and the body the upstream must receive."""

    name: str
    task: str
    call: Callable[[InferenceClient], Any]
    expected: Any
    body: dict[str, Any]

    @property
    def model(self) -> str:
        return f"fake/{self.task}"


CASES = [
    Case(
        "text-classification",
        "text-classification",
        lambda c: c.text_classification(TEXT),
        expected_text_classification(TEXT),  # every label of the [[…]] wire shape, not only the first
        {"inputs": TEXT, "parameters": {}},
    ),
    Case(
        "text-classification-top_k",
        "text-classification",
        lambda c: c.text_classification(TEXT, top_k=1, function_to_apply="softmax"),
        expected_text_classification(TEXT, top_k=1),
        {"inputs": TEXT, "parameters": {"function_to_apply": "softmax", "top_k": 1}},
    ),
    Case(
        "token-classification",
        "token-classification",
        lambda c: c.token_classification(TEXT),
        expected_token_classification(TEXT),
        {"inputs": TEXT, "parameters": {}},
    ),
    Case(
        "token-classification-none",
        "token-classification",
        lambda c: c.token_classification(TEXT, aggregation_strategy="none"),
        expected_token_classification(TEXT, "none"),
        {"inputs": TEXT, "parameters": {"aggregation_strategy": "none"}},
    ),
    Case(
        "summarization",
        "summarization",
        lambda c: c.summarization(TEXT),
        expected_summarization(TEXT)[0],
        {"inputs": TEXT, "parameters": {}},
    ),
    Case(
        "translation",
        "translation",
        lambda c: c.translation(TEXT, src_lang="en", tgt_lang="fr"),
        expected_translation(TEXT, "fr")[0],
        {"inputs": TEXT, "parameters": {"src_lang": "en", "tgt_lang": "fr"}},
    ),
    Case(
        "question-answering",
        "question-answering",
        lambda c: c.question_answering(question=QUESTION, context=TEXT),
        expected_question_answering(QUESTION, TEXT),
        {"inputs": {"question": QUESTION, "context": TEXT}, "parameters": {}},
    ),
    Case(
        "question-answering-top_k",
        "question-answering",
        lambda c: c.question_answering(question=QUESTION, context=TEXT, top_k=2),
        expected_question_answering(QUESTION, TEXT, top_k=2),
        {"inputs": {"question": QUESTION, "context": TEXT}, "parameters": {"top_k": 2}},
    ),
    Case(
        "fill-mask",
        "fill-mask",
        lambda c: c.fill_mask(MASKED),
        expected_fill_mask(MASKED),
        {"inputs": MASKED, "parameters": {}},
    ),
    Case(
        "fill-mask-targets",
        "fill-mask",
        lambda c: c.fill_mask(MASKED, targets=["capital", "heart"]),
        expected_fill_mask(MASKED, targets=["capital", "heart"]),
        {"inputs": MASKED, "parameters": {"targets": ["capital", "heart"]}},
    ),
    Case(
        "zero-shot-classification",
        "zero-shot-classification",
        lambda c: c.zero_shot_classification(TEXT, LABELS),
        expected_zero_shot(TEXT, LABELS),
        {"inputs": TEXT, "parameters": {"candidate_labels": LABELS, "multi_label": False}},
    ),
    Case(
        "zero-shot-classification-multi",
        "zero-shot-classification",
        lambda c: c.zero_shot_classification(TEXT, LABELS, multi_label=True),
        expected_zero_shot(TEXT, LABELS, multi_label=True),
        {"inputs": TEXT, "parameters": {"candidate_labels": LABELS, "multi_label": True}},
    ),
    Case(
        "sentence-similarity",
        "sentence-similarity",
        lambda c: c.sentence_similarity(TEXT, SENTENCES),
        expected_sentence_similarity(TEXT, SENTENCES),
        {"inputs": {"source_sentence": TEXT, "sentences": SENTENCES}, "parameters": {}},
    ),
    Case(
        "table-question-answering",
        "table-question-answering",
        lambda c: c.table_question_answering(TABLE, QUESTION),
        expected_table_question_answering(QUESTION, TABLE),
        {"inputs": {"query": QUESTION, "table": TABLE}, "parameters": {}},
    ),
    Case(
        "feature-extraction",
        "feature-extraction",
        lambda c: c.feature_extraction(FEATURE_INPUTS),
        expected_features(FEATURE_INPUTS),
        {"inputs": FEATURE_INPUTS},
    ),
    Case(
        "feature-extraction-root-parameters",
        "feature-extraction",
        lambda c: c.feature_extraction(TEXT, normalize=True, dimensions=3),
        expected_features(TEXT, 3, normalize=True),
        {"inputs": TEXT, "normalize": True, "dimensions": 3},  # at the root, not under `parameters`
    ),
]

FORMS = ("models", "models-pipeline", "pipeline")
"""``/models/{id}``, ``/models/{id}/pipeline/{task}``, ``/pipeline/{task}/{id}``."""


def task_path(form: str, model: str, task: str) -> str:
    """The gateway path of a task-API base URL in ``form``."""
    return {
        "models": f"/models/{model}",
        "models-pipeline": f"/models/{model}/pipeline/{task}",
        "pipeline": f"/pipeline/{task}/{model}",
    }[form]


def upstream_path(kind: str, form: str, model: str, task: str) -> str:
    """Where the upstream receives it: the router's hf-inference routes, or the serverless shapes."""
    if kind == "router":
        if form != "models" and task in PIPELINE_TASKS:
            return f"/hf-inference/models/{model}/pipeline/{task}"
        return f"/hf-inference/models/{model}"
    return f"/models/{model}" if form == "models" else f"/pipeline/{task}/{model}"


def check_output(case: Case, out: Any) -> None:
    """The client's parsed output equals the expected answer (float32 arrays for feature extraction)."""
    if case.task == "feature-extraction":
        expected = np.array(case.expected, dtype=np.float32)
        assert isinstance(out, np.ndarray) and out.shape == expected.shape and np.allclose(out, expected)
    else:
        assert like(out, case.expected) == case.expected


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("kind", ["router", "serverless"])
def test_task_api(gateway: Callable[..., str], fake: FakeHF, kind: str, form: str, case: Case) -> None:
    """Each task method gets the upstream's answer in its own wire shape; the upstream got HFH's body as sent."""
    with InferenceClient(base_url=gateway(kind) + task_path(form, case.model, case.task)) as client:
        out = case.call(client)
    check_output(case, out)
    sent = fake.last()
    assert sent.path == upstream_path(kind, form, case.model, case.task)
    assert sent.json == case.body


@pytest.mark.parametrize("kind", ["router", "serverless"])
def test_text_classification_returns_all_labels_of_the_nested_list(
    gateway: Callable[..., str], fake: FakeHF, kind: str
) -> None:
    """The ``[[…]]`` answer crosses the gateway as it is, so HFH returns every label (a flat list gives one)."""
    with InferenceClient(base_url=gateway(kind) + "/models/fake/text-classification") as client:
        labels = client.text_classification("short")
        top = client.text_classification("short", top_k=1)
    assert [(x.label, x.score) for x in labels] == [
        (x["label"], x["score"]) for x in expected_text_classification("short")
    ]
    assert len(labels) == 2 and len(top) == 1 and top[0].label == labels[0].label


@pytest.fixture(scope="module")
def catalog_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A model catalog giving the two pipeline-routed models their task."""
    path = tmp_path_factory.mktemp("catalog") / "models.toml"
    path.write_text(
        "".join(f'[[models]]\nid = "fake/{task}"\ntask = "{task}"\n\n' for task in PIPELINE_TASKS), encoding="utf-8"
    )
    yield path


@pytest.mark.parametrize("case", [c for c in CASES if c.task in PIPELINE_TASKS], ids=lambda c: c.name)
def test_catalog_task_picks_the_router_pipeline_route(
    gateway: Callable[..., str], fake: FakeHF, catalog_file: Path, case: Case
) -> None:
    """With the task in the catalog, plain ``/models/{id}`` goes to the router's ``…/pipeline/{task}`` as HFH would."""
    with InferenceClient(base_url=gateway("router", models_file=str(catalog_file)) + f"/models/{case.model}") as c:
        out = case.call(c)
    check_output(case, out)
    assert fake.last().path == f"/hf-inference/models/{case.model}/pipeline/{case.task}"
    assert fake.last().json == case.body


@pytest.mark.anyio
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("kind", ["router", "serverless"])
async def test_async_task_api(gateway: Callable[..., str], fake: FakeHF, kind: str, form: str) -> None:
    """The async client parses the same wire shapes (feature extraction to numpy, the nested classification list)."""
    base = gateway(kind)
    async with AsyncInferenceClient(
        base_url=base + task_path(form, "fake/feature-extraction", "feature-extraction")
    ) as c:
        features = await c.feature_extraction(FEATURE_INPUTS)
    expected = np.array(expected_features(FEATURE_INPUTS), dtype=np.float32)
    assert features.shape == expected.shape and np.allclose(features, expected)
    assert fake.last().path == upstream_path(kind, form, "fake/feature-extraction", "feature-extraction")
    async with AsyncInferenceClient(
        base_url=base + task_path(form, "fake/text-classification", "text-classification")
    ) as c:
        labels = await c.text_classification(TEXT)
    assert like(labels, expected_text_classification(TEXT)) == expected_text_classification(TEXT)
    async with AsyncInferenceClient(base_url=base + task_path(form, "fake/summarization", "summarization")) as c:
        summary = await c.summarization(TEXT)
    assert summary.summary_text == expected_summarization(TEXT)[0]["summary_text"]
