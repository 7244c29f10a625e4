"""The model catalog: resolution rules and the TOML format."""

from __future__ import annotations

import os
import stat
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hfasgi.catalog import CatalogWriteError, ModelCatalog, ModelEntry
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


# --- default parameters, add() and the catalog file ---------------------------------------------------------

CATALOG = """# our models (this comment must survive)
default_model = "smol"

[upstreams.local]  # the GPU box
kind = "openai"
url = "http://127.0.0.1:8000"

[[models]]
id = "smol"
upstream = "local"
task = "chat-completion"
parameters = { temperature = 0.2, stop = ["###"] }
"""


def _catalog_file(tmp_path: Path, text: str = CATALOG) -> tuple[ModelCatalog, Path]:
    path = tmp_path / "models.toml"
    path.write_text(text, encoding="utf-8")
    return ModelCatalog.from_toml(path, ROUTER, environ={}), path


def _reload(path: Path) -> ModelCatalog:
    return ModelCatalog.from_toml(path, ROUTER, environ={})


def test_default_parameters_are_read_from_the_file_as_a_table(tmp_path: Path) -> None:
    catalog, path = _catalog_file(tmp_path)
    assert catalog.path == path
    assert dict(catalog.models["smol"].parameters or {}) == {"temperature": 0.2, "stop": ["###"]}
    with pytest.raises(TypeError):
        catalog.models["smol"].parameters["temperature"] = 1.0  # type: ignore[index]
    bad = tmp_path / "bad.toml"
    bad.write_text("[[models]]\nid = 'm'\nparameters = 3\n")
    with pytest.raises(ValueError, match=r"models\[0\].parameters must be a table"):
        ModelCatalog.from_toml(bad, ROUTER, environ={})


def test_add_lists_a_model_and_replaces_one_with_the_same_id_even_when_cached() -> None:
    catalog = ModelCatalog([ROUTER, LOCAL], [ModelEntry(id="m", task="summarization")])
    assert catalog.path is None and catalog.resolve("m").upstream is ROUTER
    catalog.add(ModelEntry(id="m", upstream="local", upstream_model="/srv/m", task="chat-completion"))
    route = catalog.resolve("m")
    assert (route.upstream, route.upstream_model, route.task) == (LOCAL, "/srv/m", "chat-completion")
    catalog.add(ModelEntry(id="new", parameters={"temperature": 0.5}))
    assert catalog.entry("new:fastest") is catalog.models["new"] and catalog.entry("unlisted") is None
    with pytest.raises(ValueError, match="unknown upstream 'ghost'"):
        catalog.add(ModelEntry(id="x", upstream="ghost"))
    with pytest.raises(ValueError, match="null cannot be stored"):
        catalog.add(ModelEntry(id="y", parameters={"stop": None}))  # the same rule with a file or without
    assert set(catalog.models) == {"m", "new"}


def test_a_catalog_re_read_from_its_file_contains_the_mapping(tmp_path: Path) -> None:
    catalog, path = _catalog_file(tmp_path)
    path.chmod(0o640)
    parameters = {"temperature": 0.7, "max_new_tokens": 2048, "stop": ["\n\n"], "do_sample": True}
    hub = "meta-llama/Llama-3.1-8B-Instruct"
    catalog.add(ModelEntry(id="acme/writer", upstream_model=hub, task="text-generation", parameters=parameters))
    text = path.read_text(encoding="utf-8")
    assert text.startswith(CATALOG), "the existing text and comments are kept"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640, "the file keeps its mode"
    again = _reload(path)
    entry = again.models["acme/writer"]
    assert (entry.upstream, entry.upstream_model, entry.task) == ("default", hub, "text-generation")
    assert dict(entry.parameters or {}) == parameters
    assert again.models["smol"] == catalog.models["smol"] and again.default_model == "smol"
    catalog.add(ModelEntry(id="acme/writer", upstream="local", task="summarization"))
    assert _reload(path).models["acme/writer"] == ModelEntry(id="acme/writer", upstream="local", task="summarization")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == [], "no temporary file is left"


@pytest.mark.parametrize(
    "text",
    ['say "hi"', "back\\slash", "C:\\new\\table", "tab\there", "line\nbreak\r\n", "\x00\x01\x1f\x7f", "ünïcødé 模型 😀",
     "\u2028\ufeff", "'single'", '"""', "#not a comment", "]", ""],
)  # fmt: skip
def test_strings_are_toml_escaped_so_they_come_back_exactly(tmp_path: Path, text: str) -> None:
    catalog, path = _catalog_file(tmp_path)
    catalog.add(ModelEntry(id="m", upstream_model=text or None, parameters={text: text, "list": [text, {text: text}]}))
    entry = _reload(path).models["m"]
    assert entry.upstream_model == (text or None)
    assert dict(entry.parameters or {}) == {text: text, "list": [text, {text: text}]}


_TOML_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
_SCALARS = st.one_of(
    _TOML_TEXT, st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False)
)
_VALUES = st.recursive(
    _SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TOML_TEXT, inner, max_size=4), max_leaves=12
)


@settings(max_examples=60, deadline=None)
@given(upstream_model=_TOML_TEXT, parameters=st.dictionaries(_TOML_TEXT, _VALUES, max_size=6))
def test_any_mapping_comes_back_from_the_file_as_it_was_written(
    upstream_model: str, parameters: dict[str, object]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "models.toml"
        path.write_text(CATALOG, encoding="utf-8")
        catalog = ModelCatalog.from_toml(path, ROUTER, environ={})
        entry = ModelEntry(id="m", upstream_model=upstream_model or None, parameters=parameters)
        catalog.add(entry)
        assert _reload(path).models["m"] == entry


def test_what_toml_cannot_hold_is_refused_and_the_file_left_alone(tmp_path: Path) -> None:
    catalog, path = _catalog_file(tmp_path)
    for parameters, message in [
        ({"x": None}, "null cannot be stored"),
        ({"x": float("nan")}, "not a finite number"),
        ({"x": 2**64}, "64 bits"),
        ({"x": "\ud800"}, "lone surrogate"),
        ({"x": {1, 2}}, "a set cannot be stored"),
    ]:
        with pytest.raises(ValueError, match=message):
            catalog.add(ModelEntry(id="m", parameters=parameters))
    assert path.read_text() == CATALOG and "m" not in catalog.models


def test_a_file_that_would_not_take_the_block_is_left_alone(tmp_path: Path) -> None:
    for text in ['models = [{ id = "inline" }]\n', "[models]\nid = 'x'\n", "not = toml = at all\n"]:
        path = tmp_path / "models.toml"
        path.write_text(text)
        catalog = ModelCatalog([ROUTER], path=path)
        with pytest.raises(CatalogWriteError):
            catalog.add(ModelEntry(id="m"))
        assert path.read_text() == text and "m" not in catalog.models
    missing = ModelCatalog([ROUTER], path=tmp_path / "absent" / "models.toml")
    with pytest.raises(CatalogWriteError, match="absent"):
        missing.add(ModelEntry(id="m"))


def test_a_removed_file_is_created_again_and_a_symlink_keeps_pointing_at_it(tmp_path: Path) -> None:
    real = tmp_path / "real.toml"
    real.write_text(CATALOG)
    link = tmp_path / "models.toml"
    link.symlink_to(real)
    catalog = ModelCatalog.from_toml(link, ROUTER, environ={})
    catalog.add(ModelEntry(id="via-link"))
    assert link.is_symlink() and "via-link" in _reload(real).models
    real.unlink()
    link.unlink()
    catalog.path = tmp_path / "fresh.toml"
    catalog.add(ModelEntry(id="fresh"))
    assert list(_reload(tmp_path / "fresh.toml").models) == ["fresh"]


def test_concurrent_adds_from_several_catalogs_lose_no_mapping(tmp_path: Path) -> None:
    _, path = _catalog_file(tmp_path)
    catalogs = [_reload(path) for _ in range(8)]
    barrier = threading.Barrier(len(catalogs))

    def add(i: int) -> None:
        barrier.wait()
        for j in range(5):
            catalogs[i].add(ModelEntry(id=f"m-{i}-{j}"))

    threads = [threading.Thread(target=add, args=(i,)) for i in range(len(catalogs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(_reload(path).models) == {"smol"} | {f"m-{i}-{j}" for i in range(8) for j in range(5)}
    assert os.path.exists(str(path) + ".lock")
