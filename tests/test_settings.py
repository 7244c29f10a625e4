"""Settings: defaults, then the TOML file, then the environment, then arguments; bad values fail early."""

from __future__ import annotations

from pathlib import Path

import pytest

from hfasgi.cli import main
from hfasgi.settings import Settings


def test_defaults_point_at_the_hugging_face_router() -> None:
    settings = Settings.load(environ={})
    assert (settings.upstream_url, settings.upstream_kind) == ("https://router.huggingface.co", "router")
    assert settings.hf_token is None


def test_precedence_file_then_environment_then_arguments(tmp_path: Path) -> None:
    config = tmp_path / "hfasgi.toml"
    config.write_text('upstream_url = "http://file:1"\nupstream_kind = "tgi"\nport = 9000\ndefault_model = "m"\n')
    env = {"HFASGI_UPSTREAM_URL": "http://env:2", "HFASGI_UPSTREAM_TIMEOUT": "12.5", "HF_TOKEN": "hf_x"}
    settings = Settings.load(config, environ=env, port=9100, host=None)
    assert settings.upstream_url == "http://env:2"
    assert settings.upstream_kind == "tgi"
    assert settings.upstream_timeout == 12.5
    assert settings.port == 9100
    assert settings.default_model == "m"
    assert settings.hf_token == "hf_x"


def test_retry_settings_reach_the_forwarder() -> None:
    from hfasgi.app import create_app
    from hfasgi.forwarding.forwarder import HFForwarder

    settings = Settings.load(environ={"HFASGI_UPSTREAM_ATTEMPTS": "5", "HFASGI_LOADING_WAIT": "2.5"}, no_auth=True)
    app = create_app(settings)
    while not isinstance(app, HFForwarder):
        app = app.app  # type: ignore[attr-defined]
    assert (app.config.retry.attempts, app.config.retry.loading_wait) == (5, 2.5)


def test_the_token_never_appears_in_the_repr() -> None:
    assert "hf_secret" not in repr(Settings(hf_token="hf_secret"))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HFASGI_UPSTREAM_KIND": "bogus"}, "upstream_kind \\(HFASGI_UPSTREAM_KIND\\) must be one of"),
        ({"HFASGI_UPSTREAM_URL": "router.huggingface.co"}, "http\\(s\\) URL"),
        ({"HFASGI_UPSTREAM_TIMEOUT": "soon"}, "HFASGI_UPSTREAM_TIMEOUT must be a number"),
        ({"HFASGI_UPSTREAM_TIMEOUT": "0"}, "upstream_timeout \\(HFASGI_UPSTREAM_TIMEOUT\\) must be > 0"),
        ({"HFASGI_MAX_BODY_BYTES": "0"}, "max_body_bytes \\(HFASGI_MAX_BODY_BYTES\\) must be >= 1"),
        ({"HFASGI_MODELS": "/nonexistent/models.toml"}, "does not exist"),
        ({"HFASGI_UPSTREAM_ATTEMPTS": "0"}, "upstream_attempts \\(HFASGI_UPSTREAM_ATTEMPTS\\) must be >= 1"),
        ({"HFASGI_LOADING_WAIT": "-1"}, "loading_wait \\(HFASGI_LOADING_WAIT\\) must be >= 0"),
        ({"HFASGI_LOADING_WAIT": "a while"}, "HFASGI_LOADING_WAIT must be a number"),
    ],
)
def test_bad_settings_fail_at_load_naming_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.load(environ=env)


def test_unknown_keys_in_the_config_file_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "hfasgi.toml"
    config.write_text('upstream_ur1 = "http://typo"\n')
    with pytest.raises(ValueError, match="unknown settings \\['upstream_ur1'\\]"):
        Settings.load(config, environ={})


def test_cli_reports_bad_settings_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HFASGI_UPSTREAM_KIND", "nope")
    assert main(["serve"]) == 2
    assert "invalid settings: upstream_kind (HFASGI_UPSTREAM_KIND) must be one of" in capsys.readouterr().err
