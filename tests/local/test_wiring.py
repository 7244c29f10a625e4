"""How the reference app wires the local model: its catalog entry, its child's command and environment, its gate."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from hfasgi.app import build_catalog, layers_from_settings
from hfasgi.errors import GatewayError
from hfasgi.forwarding.forwarder import ForwarderConfig, HFForwarder
from hfasgi.forwarding.upstream import UpstreamKind
from hfasgi.local import wiring
from hfasgi.local.gate import LocalModelGate
from hfasgi.local.process import ManagedProcess
from hfasgi.local.wiring import (
    add_local_model,
    child_environment,
    install_local_model,
    local_model_id,
    local_only,
    local_process,
)
from hfasgi.settings import Settings
from hfasgi.stack import layer_resources


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "models" / "tiny"
    folder.mkdir(parents=True)
    return folder


def _settings(model: Path | str, **options: object) -> Settings:
    return Settings(local_model=str(model), no_auth=True, usage_db="off", **options)  # type: ignore[arg-type]


def test_alone_the_local_model_is_the_default_upstream_and_model(model_dir: Path) -> None:
    catalog = build_catalog(_settings(model_dir, hf_token="hf_unused"))
    assert list(catalog.upstreams) == ["default"]
    upstream = catalog.default_upstream
    assert upstream.kind is UpstreamKind.OPENAI
    assert upstream.url.startswith("http://127.0.0.1:")
    assert upstream.token is None  # no Hugging Face token is used, or needed
    assert catalog.default_model == "tiny"
    for asked in ("tiny", "dummy", "tgi", None):
        route = catalog.resolve(asked)
        assert (route.model, route.upstream_model, route.upstream.name) == ("tiny", str(model_dir), "default")
    with pytest.raises(GatewayError) as caught:
        catalog.resolve("org/elsewhere")
    assert caught.value.status == 404


def test_beside_a_configured_upstream_the_local_model_is_an_extra_one(model_dir: Path) -> None:
    settings = _settings(model_dir, upstream_url="http://tgi.internal:8080", upstream_kind="tgi")
    assert not local_only(settings)
    catalog = build_catalog(settings)
    assert list(catalog.upstreams) == ["default", "local"]
    assert catalog.resolve("tiny").upstream.name == "local"
    assert catalog.resolve("dummy").model == "tiny"
    assert catalog.resolve("org/elsewhere").upstream.name == "default"


def test_a_models_file_keeps_its_upstreams_and_default_model(model_dir: Path, tmp_path: Path) -> None:
    models = tmp_path / "models.toml"
    models.write_text('default_model = "org/big"\n[[models]]\nid = "org/big"\n')
    catalog = build_catalog(_settings(model_dir, models_file=str(models)))
    assert list(catalog.upstreams) == ["default", "local"]
    assert catalog.default_model == "org/big"
    assert catalog.resolve("tiny").upstream.name == "local"
    assert catalog.path == models


def test_a_hub_id_is_used_as_given() -> None:
    catalog = build_catalog(_settings("HuggingFaceTB/SmolLM2-135M-Instruct"))
    route = catalog.resolve("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert route.upstream_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert local_model_id("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_a_folder_that_transformers_serve_cannot_take_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "v1@2"
    folder.mkdir()
    with pytest.raises(ValueError, match="cannot take a folder path with '@' or ':'"):
        build_catalog(_settings(folder))


@pytest.mark.parametrize("given", ["/nonexistent/models/tiny", "./no-such-folder", "a/b/c"])
def test_a_missing_folder_is_refused(given: str) -> None:
    with pytest.raises(ValueError, match="there is no model folder at"):
        build_catalog(_settings(given))


def test_a_clash_with_the_models_file_is_refused(tmp_path: Path, model_dir: Path) -> None:
    models = tmp_path / "models.toml"
    models.write_text('[[models]]\nid = "tiny"\n')
    with pytest.raises(ValueError, match="already lists a model 'tiny'"):
        build_catalog(_settings(model_dir, models_file=str(models)))


def test_no_local_model_changes_nothing() -> None:
    catalog = build_catalog(Settings(no_auth=True))
    assert add_local_model(catalog, Settings(no_auth=True)) is catalog


def test_the_gate_goes_just_before_the_forwarder_and_its_process_opens_before_the_pool(model_dir: Path) -> None:
    settings = _settings(model_dir)
    forwarder = ForwarderConfig(catalog=build_catalog(settings))
    found = install_local_model(layers_from_settings(settings, forwarder), settings, forwarder)
    names = [layer.name for layer in found]
    assert names[-2:] == ["LocalModelGate", "HFForwarder"]
    gate = found[-2]
    assert gate.cls is LocalModelGate and found[-1].cls is HFForwarder
    (process,) = gate.resources
    assert isinstance(process, ManagedProcess)
    shared = layer_resources(found)
    assert shared.index(process) < shared.index(forwarder.pool)
    assert gate.kwargs["config"].upstream == "default"


def test_the_child_is_transformers_serve_pinned_to_the_folder_on_loopback(model_dir: Path) -> None:
    settings = _settings(model_dir, local_start_timeout=42.0)
    catalog = build_catalog(settings)
    upstream = catalog.default_upstream
    port = upstream.url.rpartition(":")[2]
    config = local_process(settings, upstream, str(model_dir)).config
    assert config.argv == (
        sys.executable,
        "-m",
        "transformers.cli.transformers",
        "serve",
        str(model_dir),
        "--host",
        "127.0.0.1",
        "--port",
        port,
        "--device",
        "cpu",
    )
    assert config.health_url == f"http://127.0.0.1:{port}/health"
    assert config.start_timeout == 42.0
    assert config.name == "local model 'tiny'"
    assert config.env is not None and config.env["HF_HUB_OFFLINE"] == "1"


def test_a_missing_extra_is_named(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wiring, "REQUIRED_MODULES", ("torch", "hfasgi_no_such_module"))
    settings = _settings(model_dir)
    with pytest.raises(ValueError, match=r"needs hfasgi_no_such_module .*pip install 'hfasgi\[local\]'"):
        local_process(settings, build_catalog(settings).default_upstream, str(model_dir))


def test_child_environment_drops_secrets_and_goes_offline(tmp_path: Path) -> None:
    env = child_environment(
        {"HF_TOKEN": "t", "HFASGI_REDIS_URL": "redis://x", "HF_HOME": str(tmp_path / "h"), "A": "b"}
    )
    assert env["A"] == "b" and env["HF_HUB_OFFLINE"] == "1" and env["HF_HOME"] == str(tmp_path / "h")
    assert "HF_TOKEN" not in env and "HFASGI_REDIS_URL" not in env
    assert (tmp_path / "h" / "hub").is_dir()


def test_child_environment_falls_back_to_a_private_hf_home(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = child_environment({"HF_HOME": str(blocker / "hf")})
    assert env["HF_HOME"] != str(blocker / "hf")
    assert (Path(env["HF_HOME"]) / "hub").is_dir()
    shutil.rmtree(env["HF_HOME"])
