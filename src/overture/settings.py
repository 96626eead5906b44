"""Settings, declared once: each has a flag, an ``OVERTURE_*`` variable and a toml key.

    overture serve --port 9000              # a flag wins,
    OVERTURE_PORT=9000 overture serve       # then the environment,
    echo 'port = 9000' > overture.toml      # then the file (--config / OVERTURE_CONFIG),
                                            # then the default below.

``SETTINGS`` is the one list; the CLI builds its options from it (``cli.common.setting_option``)
and Python code calls ``load_settings``. A value that cannot be read names where it came from.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from overture.core.admission import TenantLimits
from overture.core.durations import parse_rate
from overture.core.model import MAX_RATE, MIN_RATE
from overture.errors import OvertureError

DEFAULT_CONFIG = "overture.toml"
CONFIG_ENV = "OVERTURE_CONFIG"


class SettingsInvalid(OvertureError):
    """A setting's value (from a flag, the environment or the config file) cannot be used."""

    code = "bad_setting"


@dataclass(frozen=True, kw_only=True, slots=True)
class Setting:
    """One setting: its name is the toml key; the flag and variable derive from it."""

    name: str
    default: Any
    help: str
    kind: type = str
    """str, int, float, bool or tuple (a comma-separated list in a variable)."""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()

    @property
    def env(self) -> str:
        return "OVERTURE_" + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def parse(self, raw: object, source: str) -> Any:
        """``raw`` from ``source`` as this setting's kind (``SettingsInvalid`` if it is not)."""
        try:
            value = _PARSERS[self.kind](raw)
        except (TypeError, ValueError):
            kind = _KIND_NAMES[self.kind]
            raise SettingsInvalid(f"{source}: {self.name} must be {kind}, got {raw!r}") from None
        if self.choices and value.upper() not in self.choices:
            options = ", ".join(self.choices)
            raise SettingsInvalid(f"{source}: {self.name} must be one of {options}, got {raw!r}")
        if self.minimum is not None and value is not None and value < self.minimum:
            raise SettingsInvalid(f"{source}: {self.name} must be >= {self.minimum:g}, got {value}")
        if self.maximum is not None and value is not None and value > self.maximum:
            raise SettingsInvalid(f"{source}: {self.name} must be <= {self.maximum:g}, got {value}")
        return value


def _as_bool(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    raise ValueError(raw)


def _as_tuple(raw: object) -> tuple[str, ...]:
    if isinstance(raw, str):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if isinstance(raw, list | tuple) and all(isinstance(part, str) for part in raw):
        return tuple(raw)
    raise ValueError(raw)


def _as_int(raw: object) -> int:
    if isinstance(raw, bool | float):
        raise ValueError(raw)
    return int(str(raw))


def _as_float(raw: object) -> float:
    if isinstance(raw, bool):
        raise ValueError(raw)
    return float(str(raw))


def _as_str(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError(raw)
    return raw


_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}
_PARSERS: dict[type, Callable[[object], Any]] = {
    str: _as_str,
    int: _as_int,
    float: _as_float,
    bool: _as_bool,
    tuple: _as_tuple,
}
_KIND_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    tuple: "a list (comma-separated in a variable)",
}

MIB = 1024 * 1024

SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting(
            name="database_url",
            default="sqlite:///./overture.db",
            help="sqlite:///path.db (embedded) or postgresql://user@host/db.",
        ),
        Setting(name="host", default="127.0.0.1", help="Address the API listens on."),
        Setting(name="port", default=8000, kind=int, minimum=0, help="Port the API listens on."),
        Setting(
            name="workflows",
            default="./workflows",
            help="Directory of workflow files registered at start (subdirectories included).",
        ),
        Setting(
            name="workers",
            default=10,
            kind=int,
            minimum=0,
            help="Steps the in-process worker runs at once; 0 serves the API only.",
        ),
        Setting(
            name="concurrency",
            default=10,
            kind=int,
            minimum=1,
            help="Steps an `overture worker` process runs at once.",
        ),
        Setting(
            name="app",
            default=None,
            help="Your HandlerRegistry as MODULE:ATTR; the built-in handlers are always there.",
        ),
        Setting(
            name="lease",
            default=30.0,
            kind=float,
            minimum=0.1,
            help="Seconds a claim lasts without a heartbeat; a crashed worker's steps rerun after.",
        ),
        Setting(
            name="grace",
            default=30.0,
            kind=float,
            minimum=0,
            help="On SIGTERM/SIGINT, seconds running steps get to finish before being given back.",
        ),
        Setting(
            name="max_body_bytes",
            default=MIB,
            kind=int,
            minimum=1024,
            help="Largest request body the API accepts.",
        ),
        Setting(
            name="log_level",
            default="INFO",
            help="DEBUG, INFO, WARNING or ERROR.",
            choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        ),
        Setting(
            name="log_format",
            default="auto",
            help="auto (JSON lines, or readable text when stderr is a terminal), json or text.",
            choices=("AUTO", "JSON", "TEXT"),
        ),
        Setting(
            name="url",
            default="http://127.0.0.1:8000",
            help="The Overture server the CLI talks to.",
        ),
        Setting(
            name="api_key", default=None, help="Bearer key the CLI sends (overture keys create)."
        ),
        Setting(
            name="http_base_url",
            default=None,
            help="Base URL that http steps' `call: /path` resolves against.",
        ),
        Setting(
            name="http_allowed_networks",
            default=(),
            kind=tuple,
            help="Addresses, CIDRs or hosts http steps may reach although not public "
            "(e.g. 127.0.0.1).",
        ),
        Setting(
            name="http_max_response_bytes",
            default=10 * MIB,
            kind=int,
            minimum=1,
            help="Largest response body an http step reads; a larger one fails the step.",
        ),
        Setting(
            name="enable_shell",
            default=False,
            kind=bool,
            help="Let shell steps run commands on this machine (off by default).",
        ),
        Setting(
            name="shell_tenants",
            default=(),
            kind=tuple,
            help="Tenants whose shell steps run, when enable_shell is on (none: every tenant's).",
        ),
        Setting(
            name="tenant_rate_limit",
            default=None,
            help="Steps each tenant may start per second across all workers, e.g. 100/s "
            "(none: no limit).",
        ),
        Setting(
            name="tenant_max_in_flight",
            default=None,
            kind=int,
            minimum=1,
            help="Steps of one tenant running at once across all workers (none: no limit).",
        ),
        Setting(
            name="scheduler",
            default=True,
            kind=bool,
            help="Fire cron schedules from this process (any number of processes may).",
        ),
        Setting(
            name="operator_tenant",
            default=None,
            help="Tenant whose admin keys see every tenant's series on /metrics (none: each key "
            "sees its own tenant's).",
        ),
        Setting(
            name="metrics_port",
            default=0,
            kind=int,
            minimum=0,
            maximum=65535,
            help="Port `overture worker` serves its Prometheus metrics on, at metrics_host "
            "(0: off).",
        ),
        Setting(
            name="metrics_host",
            default="127.0.0.1",
            help="Address `overture worker --metrics-port` listens on (its metrics need no key: "
            "keep it where only Prometheus reaches).",
        ),
    )
}

SECTIONS = frozenset({"webhooks"})
"""Tables of the config file that are not settings: ``[webhooks.<source>]`` declares a webhook
source (see ``overture.triggers.webhooks``)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    """Every setting's value, resolved."""

    database_url: str = SETTINGS["database_url"].default
    host: str = SETTINGS["host"].default
    port: int = SETTINGS["port"].default
    workflows: str = SETTINGS["workflows"].default
    workers: int = SETTINGS["workers"].default
    concurrency: int = SETTINGS["concurrency"].default
    app: str | None = None
    lease: float = SETTINGS["lease"].default
    grace: float = SETTINGS["grace"].default
    max_body_bytes: int = SETTINGS["max_body_bytes"].default
    log_level: str = SETTINGS["log_level"].default
    log_format: str = SETTINGS["log_format"].default
    url: str = SETTINGS["url"].default
    api_key: str | None = field(default=None, repr=False)
    http_base_url: str | None = None
    http_allowed_networks: tuple[str, ...] = ()
    http_max_response_bytes: int = SETTINGS["http_max_response_bytes"].default
    enable_shell: bool = False
    shell_tenants: tuple[str, ...] = ()
    tenant_rate_limit: str | None = None
    tenant_max_in_flight: int | None = None
    scheduler: bool = True
    operator_tenant: str | None = None
    metrics_port: int = SETTINGS["metrics_port"].default
    metrics_host: str = SETTINGS["metrics_host"].default
    webhooks: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """The config file's ``[webhooks.<source>]`` tables, as written (secrets included)."""
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    """Where each value that is not a default came from: a flag, a variable or the file."""


def load_settings(
    flags: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    config: str | os.PathLike[str] | None = None,
) -> Settings:
    """Flags (None means not given) over ``OVERTURE_*`` variables over the file over defaults."""
    environ = os.environ if environ is None else environ
    file_values, file_name = read_config(config, environ)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, setting in SETTINGS.items():
        if flags is not None and flags.get(name) is not None:
            values[name], sources[name] = flags[name], setting.flag
        elif setting.env in environ:
            raw = environ[setting.env]
            values[name], sources[name] = setting.parse(raw, setting.env), setting.env
        elif name in file_values:
            values[name] = setting.parse(file_values[name], file_name)
            sources[name] = file_name
    webhooks = file_values.get("webhooks", {})
    if not isinstance(webhooks, dict):
        raise SettingsInvalid(f"{file_name}: webhooks must be a table of [webhooks.<source>]")
    return Settings(**values, webhooks=webhooks, sources=sources)


def explicit_setting(name: str, environ: Mapping[str, str] | None = None) -> Any:
    """One setting from the environment, else the config file; None when neither sets it."""
    environ = os.environ if environ is None else environ
    setting = SETTINGS[name]
    if setting.env in environ:
        return setting.parse(environ[setting.env], setting.env)
    file_values, file_name = read_config(None, environ)
    if name in file_values:
        return setting.parse(file_values[name], file_name)
    return None


def resolve_setting(name: str, environ: Mapping[str, str] | None = None) -> Any:
    """One setting from the environment, else the config file, else its default."""
    value = explicit_setting(name, environ)
    return SETTINGS[name].default if value is None else value


def read_config(
    config: str | os.PathLike[str] | None, environ: Mapping[str, str]
) -> tuple[dict[str, Any], str]:
    """The settings in the config file (``{}`` when the default file does not exist)."""
    explicit = config if config is not None else environ.get(CONFIG_ENV)
    path = Path(explicit if explicit is not None else DEFAULT_CONFIG)
    if explicit is None and not path.exists():
        return {}, str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise SettingsInvalid(f"cannot read {path}: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise SettingsInvalid(f"{path}: not valid TOML: {error}") from None
    for key in data:
        if key not in SETTINGS and key not in SECTIONS:
            close = difflib.get_close_matches(key, [*SETTINGS, *SECTIONS], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SettingsInvalid(f"{path}: unknown setting {key!r}{hint}")
    return data, str(path)


def tenant_limits(settings: Settings) -> TenantLimits:
    """The flow limits every tenant gets (``tenant_rate_limit``, ``tenant_max_in_flight``)."""
    rate = None
    if settings.tenant_rate_limit is not None:
        try:
            rate = parse_rate(settings.tenant_rate_limit)
            if not MIN_RATE <= rate <= MAX_RATE:
                raise ValueError(f"a rate must be from one a year to {MAX_RATE:g}/s")
        except ValueError as error:
            source = settings.sources.get("tenant_rate_limit", "tenant_rate_limit")
            raise SettingsInvalid(f"{source}: {error}") from None
    return TenantLimits(rate=rate, max_in_flight=settings.tenant_max_in_flight)
