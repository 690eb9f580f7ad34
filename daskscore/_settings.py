"""daskscore's tunables in dask.config, under ``daskscore.*``.

The defaults ship as ``daskscore.yaml`` (its schema: ``daskscore-schema.yaml``)
and are loaded into dask.config once, when this module is first imported, the way
``distributed.config`` loads ``distributed.yaml``. Users change them like any Dask
setting: ``~/.config/dask/daskscore.yaml``, ``DASK_DASKSCORE__WORKER_WAIT=120s``
or ``dask.config.set({"daskscore.worker-wait": "2 minutes"})``.

:func:`get` returns a setting parsed (durations in seconds through
``dask.utils.parse_timedelta``). The ``DASKSCORE_*`` variables of earlier
releases still work for one release, with a ``FutureWarning`` naming the new key:
one is used when set and its key still has the shipped default.

A leaf module: it imports nothing of daskscore but :mod:`.errors`, and nothing
heavier than ``dask.config``.
"""

from __future__ import annotations

import copy
import os
import warnings
from typing import Any

import dask.config
import yaml
from dask.utils import parse_bytes, parse_timedelta

from .errors import ConfigError

__all__ = ["DEFAULTS", "KINDS", "get", "init_timeout", "snapshot"]

_HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULTS_FILE = os.path.join(_HERE, "daskscore.yaml")
SCHEMA_FILE = os.path.join(_HERE, "daskscore-schema.yaml")

with open(DEFAULTS_FILE, encoding="utf-8") as _f:
    DEFAULTS: dict[str, Any] = yaml.safe_load(_f)

dask.config.update_defaults(DEFAULTS)

# key (below "daskscore.") -> how its value is parsed
KINDS: dict[str, str] = {
    "worker-wait": "seconds",
    "prefetch": "bool",
    "pack.max-mini-batches": "count",
    "pack.divisor": "count",
    "model-cache": "path",
    "secrets-dir": "path",
    "init-timeout.minimum": "seconds",
    "init-timeout.factor": "factor",
    "runner.shutdown-timeout": "seconds",
    "runner.read-timeout": "seconds",
    "runner.init-failures": "count",
    "runner.memory-limit": "limit",
    "publish-interval": "seconds",
    "live-interval": "seconds",
    "dashboard-forget-after": "seconds",
    "cancel-poll-interval": "interval",
    "lock.heartbeat-interval": "interval",
    "lock.stale-after": "interval",
    "lock.poll-interval": "interval",
    "csv.quote-scan": "bytes",
    "plan.stat-files": "bool",
    "no-progress-timeout": "interval",
    "embedded-cluster.keep": "switch",
}

# the variables of earlier releases, for one release: name -> key
DEPRECATED_ENV: dict[str, str] = {
    "DASKSCORE_WORKER_WAIT": "worker-wait",
    "DASKSCORE_PREFETCH": "prefetch",
    "DASKSCORE_MODEL_CACHE": "model-cache",
    "DASKSCORE_SECRETS_DIR": "secrets-dir",
}
_OLD_NAME = {key: name for name, key in DEPRECATED_ENV.items()}

_ALLOWED = {
    "seconds": 'a duration >= 0: seconds, or a string with a unit such as "90s" '
    'or "2 minutes"',
    "interval": 'a duration > 0: seconds, or a string with a unit such as "1s" '
    'or "500ms"',
    "bool": "true or false",
    "switch": 'true, false or "auto"',
    "count": "a whole number >= 1",
    "factor": "a number greater than 0",
    "path": "a folder path, or null for the default",
    "bytes": 'a size >= 0: a number of bytes, or a string such as "1MiB"',
    "limit": 'a size such as "4GiB" or "1500MB", a number of bytes, or null for '
    "no limit",
}
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def env_name(key: str) -> str:
    """The environment variable Dask reads for ``daskscore.<key>``."""
    return "DASK_DASKSCORE__" + key.upper().replace("-", "_").replace(".", "__")


def _short(key: str) -> str:
    key = key.removeprefix("daskscore.")
    if key not in KINDS:
        raise KeyError(f"daskscore.{key} is not a daskscore setting; known: "
                       + ", ".join(sorted(KINDS)))
    return key


def _default(key: str) -> Any:
    value: Any = DEFAULTS["daskscore"]
    for part in key.split("."):
        value = value[part]
    return value


def _from_old_variable(key: str, text: str) -> Any:
    """An old variable's value, read as that variable was read."""
    if key == "prefetch":
        return text != "0"
    return text


def _raw(key: str) -> Any:
    # the default when the key is missing: a ``dask.config.set({"daskscore.x": ..})``
    # entered before this module was imported deletes the whole ``daskscore``
    # section (defaults included) when it exits
    value = dask.config.get(f"daskscore.{key}", default=_default(key))
    old = _OLD_NAME.get(key)
    if old and os.environ.get(old) and value == _default(key):
        warnings.warn(
            f"the {old} environment variable is deprecated and will be removed in "
            f"the next release; use the Dask setting daskscore.{key} instead "
            f"({env_name(key)}, ~/.config/dask/daskscore.yaml or dask.config.set)",
            FutureWarning,
            stacklevel=3,
        )
        value = _from_old_variable(key, os.environ[old])
    return value


def parse(key: str, value: Any) -> Any:
    """``value`` of setting ``key`` as daskscore uses it; ConfigError if wrong."""
    kind = KINDS[_short(key)]
    name = f"daskscore.{_short(key)}"
    try:
        if kind in ("seconds", "interval"):
            if isinstance(value, bool):
                raise ValueError(value)
            seconds = float(parse_timedelta(value, default="seconds"))
            if seconds < 0 or (kind == "interval" and seconds == 0):
                raise ValueError(value)
            return seconds
        if kind == "switch" and str(value).strip().lower() == "auto":
            return "auto"
        if kind in ("bool", "switch"):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE | _FALSE:
                return text in _TRUE
            raise ValueError(value)
        if kind == "count":
            if isinstance(value, bool):
                raise ValueError(value)
            if isinstance(value, str) and value.strip().isdigit():
                value = int(value.strip())
            if not isinstance(value, int) or value < 1:
                raise ValueError(value)
            return value
        if kind in ("bytes", "limit"):
            if kind == "limit" and (value is None or value == ""):
                return None
            if isinstance(value, bool):
                raise ValueError(value)
            size = int(parse_bytes(value)) if isinstance(value, str) else value
            if not isinstance(size, int) or size < (1 if kind == "limit" else 0):
                raise ValueError(value)
            return size
        if kind == "factor":
            if isinstance(value, bool):
                raise ValueError(value)
            number = float(value)
            if not number > 0:
                raise ValueError(value)
            return number
        # a path
        if value is None or value == "":
            return None
        if not isinstance(value, str | os.PathLike):
            raise ValueError(value)
        return os.path.expanduser(os.fspath(value))
    except (ValueError, TypeError, KeyError, IndexError):
        raise ConfigError(name, value, _ALLOWED[kind]) from None


def get(key: str) -> Any:
    """The setting ``daskscore.<key>`` (``"worker-wait"`` or its full name), parsed.

    Durations are float seconds, counts ints, flags bools, folders a path or
    None (the default folder is the caller's).
    """
    key = _short(key)
    return parse(key, _raw(key))


def init_timeout(run_invocation_timeout: float) -> float:
    """Seconds ``init()`` may take: ``max(minimum, factor * run timeout)``."""
    return max(
        get("init-timeout.minimum"),
        get("init-timeout.factor") * float(run_invocation_timeout),
    )


def snapshot() -> dict[str, Any]:
    """Every setting as this process sees it (raw values): ``{full key: value}``.

    For a job that runs elsewhere (``daskscore submit``): applied there with
    ``dask.config.set(snapshot)``, it reads the settings of the submitting client.
    """
    return {f"daskscore.{key}": copy.deepcopy(_raw(key)) for key in KINDS}
