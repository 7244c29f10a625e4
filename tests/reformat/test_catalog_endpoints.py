"""The provider task API's model endpoints: listing the catalog, and mapping a model into it (and its file)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hfasgi.catalog import ModelCatalog, ModelEntry
from hfasgi.context import get_context
from hfasgi.errors import GatewayError
from hfasgi.forwarding.upstream import Upstream, UpstreamKind
from hfasgi.principal import Principal
from hfasgi.reformat.tasks_api import map_model, send_models
from tests.asgi_driver import request

ROUTER = Upstream(kind=UpstreamKind.ROUTER, url="http://127.0.0.1:1", token="hf_x")
ADMIN = Principal(id="root", admin=True)
USER = Principal(id="alice")
CATALOG_TEXT = """# the team's models
default_model = "org/chat"

[upstreams.local]   # a local OpenAI-style server
kind = "openai"
url = "http://127.0.0.1:8000"

[[models]]
id = "org/chat"
task = "chat-completion"
"""
MAPPING = {
    "provider_model_id": "acme/writer",
    "hub_model_id": "meta-llama/Llama-3.1-8B-Instruct",
    "task_type": "text-generation",
    "parameters": {"temperature": 0.7, "max_tokens": 2048},
}


def listed() -> ModelCatalog:
    return ModelCatalog(
        [ROUTER, Upstream(name="local", kind=UpstreamKind.OPENAI, url="http://127.0.0.1:8000")],
        [
            ModelEntry(id="chat", upstream="local", upstream_model="/srv/smol", task="chat-completion"),
            ModelEntry(id="org/emb", task="feature-extraction"),
            ModelEntry(id="org/gen", task="text-generation"),
            ModelEntry(id="org/any"),
        ],
        default_model="org/default",
    )


def models_app(catalog: ModelCatalog) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            await send_models(scope, send, catalog, scope["query_string"])
        except GatewayError as err:
            await err.send(scope, send)

    return app


def map_app(catalog: ModelCatalog, principal: Principal | None) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        get_context(scope).principal = principal
        try:
            await map_model(scope, receive, send, catalog)
        except GatewayError as err:
            await err.send(scope, send)

    return app


async def list_models(catalog: ModelCatalog, query: bytes = b"") -> tuple[int, Any]:
    stream, raw = await request(models_app(catalog), "GET", "/hf/tasks/models", query=query)
    return stream.status, json.loads(raw)


async def post_map(catalog: ModelCatalog, body: Any, principal: Principal | None = ADMIN) -> tuple[int, Any]:
    options = {"body": body} if isinstance(body, bytes) else {"json_body": body}
    stream, raw = await request(map_app(catalog, principal), "POST", "/hf/tasks/models/map", **options)
    assert int(stream.headers[b"content-length"]) == len(raw)
    return stream.status, json.loads(raw)


def file_catalog(tmp_path: Path, text: str = CATALOG_TEXT) -> tuple[ModelCatalog, Path]:
    path = tmp_path / "models.toml"
    path.write_text(text, encoding="utf-8")
    return ModelCatalog.from_toml(path, ROUTER, environ={}), path


# --- GET models ---------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_list_has_every_model_its_hub_id_and_task_and_the_default_model() -> None:
    status, doc = await list_models(listed())
    assert status == 200
    assert doc["models"] == [
        {"model_id": "org/default", "hub_model_id": "org/default", "task_type": None},
        {"model_id": "chat", "hub_model_id": "/srv/smol", "task_type": "chat-completion"},
        {"model_id": "org/emb", "hub_model_id": "org/emb", "task_type": "feature-extraction"},
        {"model_id": "org/gen", "hub_model_id": "org/gen", "task_type": "text-generation"},
        {"model_id": "org/any", "hub_model_id": "org/any", "task_type": None},
    ]
    assert doc["count"] == 5
    assert doc["task_types"] == ["chat-completion", "feature-extraction", "text-generation"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("query", "ids"),
    [
        (b"task_type=text-generation", ["org/gen"]),
        (b"task_type=conversational", ["chat"]),
        (b"task_type=embedding", ["org/emb"]),
        (b"task_type=text-generation,feature-extraction", ["org/emb", "org/gen"]),
        (b"task_type=text-generation&task_type=chat-completion", ["chat", "org/gen"]),
        (b"task_type=summarization", []),
        (b"task_type=", ["org/default", "chat", "org/emb", "org/gen", "org/any"]),
        (b"limit=3", ["org/default", "chat", "org/emb", "org/gen", "org/any"]),
    ],
)
async def test_the_task_type_filter(query: bytes, ids: list[str]) -> None:
    status, doc = await list_models(listed(), query)
    assert status == 200
    assert [m["model_id"] for m in doc["models"]] == ids and doc["count"] == len(ids)
    assert doc["task_types"] == ["chat-completion", "feature-extraction", "text-generation"]  # what can be filtered


@pytest.mark.anyio
@pytest.mark.parametrize("query", [b"task_type=Text%20Generation", b"task_type=%ff", b"task_type=a;b"])
async def test_a_malformed_task_type_is_a_400(query: bytes) -> None:
    status, doc = await list_models(listed(), query)
    assert status == 400 and doc["error_type"] == "invalid_request"


@pytest.mark.anyio
async def test_an_empty_catalog_lists_nothing() -> None:
    assert (await list_models(ModelCatalog.single(ROUTER))) == (200, {"models": [], "count": 0, "task_types": []})


# --- POST models/map ----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_mapping_joins_the_catalog_and_its_file(tmp_path: Path) -> None:
    catalog, path = file_catalog(tmp_path)
    status, doc = await post_map(catalog, MAPPING)
    assert status == 200, doc
    assert doc["success"] is True
    assert (doc["provider_model_id"], doc["hub_model_id"]) == ("acme/writer", "meta-llama/Llama-3.1-8B-Instruct")
    assert "acme/writer" in doc["message"] and "saved" in doc["message"]
    route = catalog.resolve("acme/writer")
    assert (route.upstream, route.upstream_model, route.task) == (ROUTER, MAPPING["hub_model_id"], "text-generation")
    again = ModelCatalog.from_toml(path, ROUTER, environ={})
    entry = again.models["acme/writer"]
    assert (entry.upstream_model, entry.task) == (MAPPING["hub_model_id"], "text-generation")
    assert dict(entry.parameters or {}) == MAPPING["parameters"]
    assert "org/chat" in again.models and again.default_model == "org/chat"
    assert path.read_text().startswith(CATALOG_TEXT), "the file's text and comments are kept"
    listing = (await list_models(catalog, b"task_type=text-generation"))[1]
    assert listing["models"] == [
        {"model_id": "acme/writer", "hub_model_id": MAPPING["hub_model_id"], "task_type": "text-generation"}
    ]


@pytest.mark.anyio
async def test_a_second_mapping_of_an_id_replaces_the_first_in_memory_and_on_reload(tmp_path: Path) -> None:
    catalog, path = file_catalog(tmp_path)
    assert (await post_map(catalog, MAPPING))[0] == 200
    catalog.resolve("acme/writer")  # cached
    second = {**MAPPING, "hub_model_id": "org/other", "task_type": "conversational", "upstream": "local"}
    second.pop("parameters")
    assert (await post_map(catalog, second))[0] == 200
    route = catalog.resolve("acme/writer")
    assert (route.upstream.name, route.upstream_model, route.task) == ("local", "org/other", "chat-completion")
    again = ModelCatalog.from_toml(path, ROUTER, environ={}).models["acme/writer"]
    assert (again.upstream, again.upstream_model, again.task, again.parameters) == (
        "local",
        "org/other",
        "chat-completion",
        None,
    )


@pytest.mark.anyio
async def test_without_a_file_the_mapping_lives_in_memory() -> None:
    catalog = listed()
    status, doc = await post_map(catalog, {**MAPPING, "hub_model_id": "acme/writer"}, principal=None)
    assert status == 200 and "no file" in doc["message"]
    entry = catalog.models["acme/writer"]
    assert entry.upstream_model is None and catalog.resolve("acme/writer").upstream_model == "acme/writer"


@pytest.mark.anyio
async def test_only_an_admin_may_map(tmp_path: Path) -> None:
    catalog, path = file_catalog(tmp_path)
    status, doc = await post_map(catalog, MAPPING, principal=USER)
    assert (status, doc["error_type"]) == (403, "permission") and "admin" in doc["error"]
    assert "acme/writer" not in catalog.models and path.read_text() == CATALOG_TEXT
    assert (await post_map(catalog, b"not even json", principal=USER))[0] == 403  # refused before the body


BAD_MAPPINGS = [
    (b"{", "not valid JSON"),
    (b"[]", "JSON object"),
    ({**MAPPING, "price": 3}, "Unknown field 'price'"),
    ({k: v for k, v in MAPPING.items() if k != "provider_model_id"}, "provider_model_id is required"),
    ({k: v for k, v in MAPPING.items() if k != "hub_model_id"}, "hub_model_id is required"),
    ({k: v for k, v in MAPPING.items() if k != "task_type"}, "task_type is required"),
    ({**MAPPING, "provider_model_id": ""}, "provider_model_id is required"),
    ({**MAPPING, "provider_model_id": "dummy"}, "means the default model"),
    ({**MAPPING, "provider_model_id": "a b"}, "is not a model id"),
    ({**MAPPING, "hub_model_id": "org/../x y"}, "is not a Hub model id"),
    ({**MAPPING, "hub_model_id": "/srv/x\n", "upstream": "local"}, "no control characters"),
    ({**MAPPING, "task_type": "Text Generation"}, "is not a task name"),
    ({**MAPPING, "upstream": "nowhere"}, "is not an upstream (known: default, local)"),
    ({**MAPPING, "upstream": 3}, "is not an upstream"),
    ({**MAPPING, "parameters": [1]}, "parameters must be an object"),
    ({**MAPPING, "parameters": {"max_tokens": "many"}}, "parameters.max_tokens"),
    ({**MAPPING, "parameters": {"stop": None}}, "null cannot be stored"),
    ({**MAPPING, "parameters": {"big": 2**70}}, "does not fit a TOML integer"),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("body", "message"), BAD_MAPPINGS)
async def test_bad_mappings_are_a_400_naming_the_field_and_change_nothing(
    tmp_path: Path, body: Any, message: str
) -> None:
    catalog, path = file_catalog(tmp_path)
    before = dict(catalog.models)
    status, doc = await post_map(catalog, body)
    assert status == 400, doc
    assert message in doc["error"], doc["error"]
    assert dict(catalog.models) == before and path.read_text() == CATALOG_TEXT


@pytest.mark.anyio
async def test_a_huge_mapping_body_is_a_413() -> None:
    status, doc = await post_map(listed(), {**MAPPING, "parameters": {"x": "y" * 70_000}})
    assert (status, doc["error_type"]) == (413, "payload_too_large")


@pytest.mark.anyio
async def test_a_file_that_cannot_be_written_is_a_500_and_the_catalog_stays_as_it_was(tmp_path: Path) -> None:
    catalog, path = file_catalog(tmp_path, 'models = [{ id = "inline" }]\n')
    status, doc = await post_map(catalog, MAPPING)
    assert (status, doc["error_type"]) == (500, "internal") and "could not be saved" in doc["error"]
    assert "acme/writer" not in catalog.models and path.read_text() == 'models = [{ id = "inline" }]\n'
    gone = ModelCatalog([ROUTER], path=tmp_path / "no-such-dir" / "models.toml")
    status, doc = await post_map(gone, MAPPING)
    assert status == 500 and "acme/writer" not in gone.models
