"""Settings: a flag over an ``OVERTURE_*`` variable over ``overture.toml`` over the default, and
every value that cannot be used named with where it came from."""

from __future__ import annotations

from pathlib import Path

import pytest

from overture.settings import (
    CONFIG_ENV,
    SETTINGS,
    Settings,
    SettingsInvalid,
    load_settings,
    read_config,
    resolve_setting,
)


@pytest.fixture(autouse=True)
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty directory, so a developer's ./overture.toml cannot leak in."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def toml(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_when_nothing_is_given() -> None:
    settings = load_settings({}, environ={})
    assert settings == Settings()
    assert settings.port == SETTINGS["port"].default == 8000
    assert settings.database_url == "sqlite:///./overture.db"
    assert dict(settings.sources) == {}


def test_the_file_beats_the_default(elsewhere: Path) -> None:
    toml(elsewhere / "overture.toml", "port = 9001\n")
    settings = load_settings({}, environ={})
    assert settings.port == 9001
    assert settings.sources["port"] == "overture.toml"


def test_the_environment_beats_the_file(elsewhere: Path) -> None:
    toml(elsewhere / "overture.toml", "port = 9001\nhost = '0.0.0.0'\n")
    settings = load_settings({}, environ={"OVERTURE_PORT": "9002"})
    assert settings.port == 9002
    assert settings.sources["port"] == "OVERTURE_PORT"
    assert settings.host == "0.0.0.0"  # what the variable does not set still comes from the file


def test_a_flag_beats_the_environment_and_the_file(elsewhere: Path) -> None:
    toml(elsewhere / "overture.toml", "port = 9001\n")
    settings = load_settings({"port": 9003}, environ={"OVERTURE_PORT": "9002"})
    assert settings.port == 9003
    assert settings.sources["port"] == "--port"


def test_a_flag_of_zero_still_counts_as_given(elsewhere: Path) -> None:
    toml(elsewhere / "overture.toml", "workers = 4\n")
    settings = load_settings({"workers": 0, "port": None}, environ={"OVERTURE_WORKERS": "5"})
    assert settings.workers == 0  # `--workers 0` serves the API only, whatever else says
    assert settings.port == 8000  # None: the flag was not given


def test_each_kind_is_read_from_a_variable() -> None:
    environ = {
        "OVERTURE_LEASE": "2.5",
        "OVERTURE_WORKERS": "3",
        "OVERTURE_HTTP_ALLOWED_NETWORKS": "127.0.0.1, 10.0.0.0/8,,",
        "OVERTURE_APP": "myapp.handlers:registry",
        "OVERTURE_LOG_LEVEL": "debug",
    }
    settings = load_settings({}, environ=environ)
    assert settings.lease == 2.5
    assert settings.workers == 3
    assert settings.http_allowed_networks == ("127.0.0.1", "10.0.0.0/8")
    assert settings.app == "myapp.handlers:registry"
    assert settings.log_level.upper() == "DEBUG"


def test_a_list_in_the_file_is_a_toml_array(elsewhere: Path) -> None:
    toml(elsewhere / "overture.toml", "http_allowed_networks = ['127.0.0.1', 'localhost']\n")
    assert load_settings({}, environ={}).http_allowed_networks == ("127.0.0.1", "localhost")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("OVERTURE_PORT", "eighty", "OVERTURE_PORT: port must be an integer, got 'eighty'"),
        ("OVERTURE_PORT", "80.5", "port must be an integer"),
        ("OVERTURE_LEASE", "soon", "OVERTURE_LEASE: lease must be a number, got 'soon'"),
        ("OVERTURE_LEASE", "0", "OVERTURE_LEASE: lease must be >= 0.1, got 0.0"),
        ("OVERTURE_WORKERS", "-1", "workers must be >= 0"),
        ("OVERTURE_MAX_BODY_BYTES", "10", "max_body_bytes must be >= 1024"),
        ("OVERTURE_LOG_LEVEL", "LOUD", "log_level must be one of DEBUG, INFO, WARNING, ERROR"),
    ],
)
def test_a_bad_variable_is_named(variable: str, value: str, message: str) -> None:
    with pytest.raises(SettingsInvalid, match=message):
        load_settings({}, environ={variable: value})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("port = 80.5\n", "port must be an integer, got 80.5"),
        ("port = true\n", "port must be an integer, got True"),
        ("lease = true\n", "lease must be a number"),
        ("host = 1\n", "host must be a string, got 1"),
        ("http_allowed_networks = [1, 2]\n", "http_allowed_networks must be a list"),
        ("prot = 80\n", "unknown setting 'prot' \\(did you mean 'port'\\?\\)"),
        ("port = \n", "not valid TOML"),
    ],
)
def test_a_bad_file_is_named_with_the_file(elsewhere: Path, text: str, message: str) -> None:
    toml(elsewhere / "overture.toml", text)
    with pytest.raises(SettingsInvalid, match=message) as raised:
        load_settings({}, environ={})
    assert "overture.toml" in str(raised.value)


def test_the_environment_wins_even_over_a_bad_file_value(elsewhere: Path) -> None:
    toml(elsewhere / "overture.toml", "port = 'eighty'\n")
    assert load_settings({}, environ={"OVERTURE_PORT": "81"}).port == 81


def test_another_file_is_chosen_by_flag_or_variable(elsewhere: Path) -> None:
    toml(elsewhere / "overture.toml", "port = 1\n")
    chosen = toml(elsewhere / "prod.toml", "port = 2\n")
    by_variable = toml(elsewhere / "env.toml", "port = 3\n")
    assert load_settings({}, environ={}, config=chosen).port == 2
    assert load_settings({}, environ={CONFIG_ENV: str(by_variable)}).port == 3
    assert load_settings({}, environ={CONFIG_ENV: str(by_variable)}, config=chosen).port == 2


def test_a_chosen_file_must_exist(elsewhere: Path) -> None:
    with pytest.raises(SettingsInvalid, match="cannot read"):
        load_settings({}, environ={}, config=elsewhere / "missing.toml")
    with pytest.raises(SettingsInvalid, match="cannot read"):
        load_settings({}, environ={CONFIG_ENV: str(elsewhere / "missing.toml")})
    assert read_config(None, {}) == ({}, "overture.toml")  # the default file is optional


def test_resolve_setting_reads_the_environment_then_the_file(elsewhere: Path) -> None:
    assert resolve_setting("url", {}) == "http://127.0.0.1:8000"
    toml(elsewhere / "overture.toml", "url = 'http://file:1'\n")
    assert resolve_setting("url", {}) == "http://file:1"
    assert resolve_setting("url", {"OVERTURE_URL": "http://env:2"}) == "http://env:2"


def test_every_setting_is_declared_once_with_its_variable_and_flag() -> None:
    names = [setting.name for setting in SETTINGS.values()]
    assert len(names) == len(set(names))
    for name, setting in SETTINGS.items():
        assert setting.env == "OVERTURE_" + name.upper()
        assert setting.flag == "--" + name.replace("_", "-")
        assert setting.help
        if setting.default is not None:
            assert setting.parse(setting.default, "default") == setting.default
    assert set(SETTINGS) <= set(Settings.__dataclass_fields__)


def test_the_api_key_is_not_shown_in_a_repr() -> None:
    settings = load_settings({}, environ={"OVERTURE_API_KEY": "ovt_secret_value"})
    assert settings.api_key == "ovt_secret_value"
    assert "ovt_secret_value" not in repr(settings)
