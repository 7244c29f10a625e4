"""The model catalog: resolution rules and the TOML format."""

from __future__ import annotations

from pathlib import Path

import pytest

from hfasgi.catalog import ModelCatalog, ModelEntry
from hfasgi.errors import GatewayError
from hfasgi.forwarding.upstream import Upstream, UpstreamKind

ROUTER = Upstream(kind=UpstreamKind.ROUTER, url="https://router.example", token="hf_router")
LOCAL = Upstream(name="local", kind=UpstreamKind.OPENAI, url="http://127.0.0.1:8000")


def test_no_catalog_sends_every_id_to_the_default_upstream_unchanged() -> None:
    catalog = ModelCatalog.single(ROUTER)
    route = catalog.resolve("meta-llama/Llama-3.1-8B-Instruct")
    assert (route.model, route.upstream, route.upstream_model, route.task) == (
        "meta-llama/Llama-3.1-8B-Instruct",
        ROUTER,
        "meta-llama/Llama-3.1-8B-Instruct",
        None,
    )


@pytest.mark.parametrize("suffix", [":fastest", ":cheapest", ":preferred", ":groq", ":fireworks-ai"])
def test_router_suffixes_pass_through_to_the_router(suffix: str) -> None:
    assert ModelCatalog.single(ROUTER).resolve("org/m" + suffix).upstream_model == "org/m" + suffix


def test_suffixes_are_stripped_for_other_upstreams_and_listed_models_match_without_them() -> None:
    catalog = ModelCatalog([ROUTER, LOCAL], [ModelEntry(id="smol", upstream="local", upstream_model="/srv/smol")])
    assert catalog.resolve("smol:fastest").upstream_model == "/srv/smol"
    tgi = ModelCatalog.single(Upstream(kind=UpstreamKind.TGI, url="http://tgi"))
    assert tgi.resolve("org/m:groq").upstream_model == "org/m"


def test_gguf_file_suffixes_are_not_mistaken_for_providers() -> None:
    catalog = ModelCatalog.single(Upstream(kind=UpstreamKind.OPENAI, url="http://ts"))
    assert catalog.resolve("org/repo:model.Q4_1.gguf").upstream_model == "org/repo:model.Q4_1.gguf"


@pytest.mark.parametrize("placeholder", [None, "", "dummy", "tgi"])
def test_placeholders_mean_the_default_model(placeholder: str | None) -> None:
    catalog = ModelCatalog.single(ROUTER, default_model="org/default")
    route = catalog.resolve(placeholder)
    assert (route.model, route.upstream_model) == ("org/default", "org/default")


def test_placeholder_without_a_default_model_is_a_clear_400() -> None:
    with pytest.raises(GatewayError) as info:
        ModelCatalog.single(ROUTER).resolve("dummy")
    assert (info.value.status, info.value.error_type) == (400, "model_required")
    assert "HFASGI_DEFAULT_MODEL" in info.value.message


def test_a_tgi_upstream_needs_no_default_model() -> None:
    tgi = Upstream(kind=UpstreamKind.TGI, url="http://tgi")
    assert ModelCatalog.single(tgi).resolve("tgi").upstream is tgi


def test_listed_models_route_to_their_upstream_with_their_task() -> None:
    catalog = ModelCatalog(
        [ROUTER, LOCAL],
        [ModelEntry(id="cls", upstream="default", upstream_model="org/classifier", task="text-classification")],
    )
    route = catalog.resolve("cls")
    assert (route.upstream, route.upstream_model, route.task) == (ROUTER, "org/classifier", "text-classification")


def test_unlisted_models_can_be_refused() -> None:
    catalog = ModelCatalog([ROUTER], [ModelEntry(id="only")], allow_unlisted=False)
    assert catalog.resolve("only").model == "only"
    with pytest.raises(GatewayError) as info:
        catalog.resolve("other")
    assert (info.value.status, info.value.error_type) == (404, "model_not_found")


def test_unknown_upstream_name_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="unknown upstream 'nowhere'"):
        ModelCatalog([ROUTER], [ModelEntry(id="m", upstream="nowhere")])


def test_toml_catalog(tmp_path: Path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(
        """
default_model = "smol"

[upstreams.local]
kind = "openai"
url = "http://127.0.0.1:8000/v1"
token_env = "LOCAL_TOKEN"
timeout = 42

[upstreams.hub]
kind = "serverless"
url = "https://api-inference.example"

[[models]]
id = "smol"
upstream = "local"
upstream_model = "/srv/smollm2"
task = "chat-completion"
"""
    )
    catalog = ModelCatalog.from_toml(path, ROUTER, environ={"LOCAL_TOKEN": "tok-local", "HF_TOKEN": "hf_env"})
    route = catalog.resolve("dummy")
    assert route.upstream.name == "local"
    assert route.upstream.base == "http://127.0.0.1:8000"  # a trailing /v1 is accepted for OpenAI servers
    assert route.upstream.token == "tok-local"
    assert route.upstream.timeouts.total == 42
    assert route.upstream_model == "/srv/smollm2"
    assert catalog.upstreams["hub"].token == "hf_env"  # HF kinds default to HF_TOKEN
    assert catalog.upstreams["default"] is ROUTER


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bogus = 1", "unknown keys"),
        ("[upstreams.x]\nkind = 'nope'\nurl = 'http://x'", "kind must be one of"),
        ("[upstreams.x]\nkind = 'tgi'", "url is required"),
        ("[upstreams.x]\nurl = 'ftp://x'", "http\\(s\\) URL"),
        ("[upstreams.x]\nurl = 'http://x'\ntimeout = -1", "must be > 0"),
        ("[[models]]\nid = 'm'\nprice = 3", "unknown keys"),
        ("[[models]]\nid = 'm'\nupstream = 'ghost'", "unknown upstream"),
        ("not toml [", "models.toml"),
    ],
)
def test_bad_catalog_files_fail_at_load_with_the_field_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "models.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        ModelCatalog.from_toml(path, ROUTER, environ={})
