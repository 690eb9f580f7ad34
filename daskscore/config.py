"""ParallelRunConfig: the settings of a batch-scoring step, validated once."""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from dask.utils import parse_bytes, parse_timedelta

from .errors import ConfigError

__all__ = [
    "DEFAULT_APPEND_ROW_FILE_NAME",
    "NameRule",
    "OutputAction",
    "ParallelRunConfig",
    "check_name",
    "parse_file_count",
    "parse_size",
    "parse_timeout",
]

DEFAULT_APPEND_ROW_FILE_NAME = "parallel_run_step.txt"
DEFAULT_FILE_MINI_BATCH = 10
DEFAULT_TABULAR_MINI_BATCH = 1024 * 1024
OUTPUT_FORMATS = (".txt", ".csv", ".parquet")
LOGGING_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# mini_batch_size: KB, MB and GB are powers of 1024, as in Azure ML's
# ParallelRunConfig (where dask.utils.parse_bytes reads them as powers of 1000):
# they are mapped to KiB, MiB and GiB, with whole numbers only, as there. The IEC
# units (KiB, MiB, GiB) also take fractions ("1.5 MiB").
_REFERENCE_SIZE_RE = re.compile(r"^(\d+)\s*([kmg])b$", re.IGNORECASE)
_BINARY_SIZE_RE = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)\s*([kmg])ib$", re.IGNORECASE)
_SIZE_ALLOWED = (
    "a positive whole number, optionally with KB, MB or GB (powers of 1024), "
    'or a number with KiB, MiB or GiB, e.g. "5", "64KB", "1MB", "1.5 MiB"'
)
_TIMEOUT_ALLOWED = (
    "a number of seconds greater than 0, or a duration with a unit, "
    'e.g. "90s", "2 minutes"'
)


class OutputAction(enum.StrEnum):
    """What happens to the values ``run()`` returns."""

    APPEND_ROW = "append_row"
    SUMMARY_ONLY = "summary_only"

    def __str__(self) -> str:
        return self.value


def parse_size(value: int | str, field_name: str = "mini_batch_size") -> int:
    """Parse a tabular mini-batch size into bytes.

    A whole number of bytes ("1024"), optionally with KB, MB or GB: powers of 1024
    as in the reference system ("64KB" is 65536), or a number with KiB, MiB or
    GiB ("64 MiB", "1.5MiB"); both through ``dask.utils.parse_bytes``.
    """
    if isinstance(value, bool):
        raise ConfigError(field_name, value, _SIZE_ALLOWED)
    if isinstance(value, int):
        if value < 1:
            raise ConfigError(field_name, value, _SIZE_ALLOWED)
        return value
    text = str(value).strip()
    match = _REFERENCE_SIZE_RE.match(text) or _BINARY_SIZE_RE.match(text)
    if match:
        size = parse_bytes(f"{match.group(1)} {match.group(2)}iB")
    elif re.fullmatch(r"\d+", text):
        size = int(text)
    else:
        raise ConfigError(field_name, value, _SIZE_ALLOWED)
    if size < 1:
        raise ConfigError(field_name, value, _SIZE_ALLOWED)
    return size


def parse_timeout(value: Any, field_name: str = "run_invocation_timeout") -> float:
    """Seconds, > 0, from a number or a duration string ("90s", "2 minutes").

    A string must name its unit ("60" is refused: give 60 or "60s").
    """
    if isinstance(value, bool):
        raise ConfigError(field_name, value, _TIMEOUT_ALLOWED)
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and not re.fullmatch(r"\s*[\d.]+\s*", value):
        try:
            seconds = float(parse_timedelta(value.strip()))
        except (ValueError, TypeError, KeyError, IndexError):
            raise ConfigError(field_name, value, _TIMEOUT_ALLOWED) from None
    else:
        raise ConfigError(field_name, value, _TIMEOUT_ALLOWED)
    if not seconds > 0:
        raise ConfigError(field_name, value, _TIMEOUT_ALLOWED)
    return seconds


def parse_file_count(value: int | str, field_name: str = "mini_batch_size") -> int:
    """Parse a FileDataset mini-batch size: a number of files, >= 1."""
    allowed = 'for a FileDataset, a whole number of files >= 1, e.g. "5"'
    if isinstance(value, bool):
        raise ConfigError(field_name, value, allowed)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or value < 1:
        raise ConfigError(field_name, value, allowed)
    return value


@dataclass(frozen=True)
class NameRule:
    """What a name must look like: a pattern, a length range and the rule in words.

    ``allowed`` is what a :class:`~daskscore.errors.ConfigError` says is allowed.
    """

    pattern: re.Pattern[str]
    allowed: str
    min_length: int = 1
    max_length: int | None = None

    def matches(self, name: Any) -> bool:
        """Whether ``name`` is a string that follows the rule."""
        return (
            isinstance(name, str)
            and self.min_length <= len(name) <= (self.max_length or len(name))
            and self.pattern.match(name) is not None
        )


def check_name(field_name: str, name: Any, rule: NameRule) -> str:
    """``name`` when it follows ``rule``, else a ConfigError for ``field_name``.

    The one name validator: step names (``daskscore.step``) and registry names
    (datastores, datasets, models, experiments: ``daskscore.registry._common``)
    each pass their own rule.
    """
    if not rule.matches(name):
        raise ConfigError(field_name, name, rule.allowed)
    return name


def _check_int(name: str, value: Any, minimum: int, allowed: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(name, value, allowed)


@dataclass(frozen=True)
class ParallelRunConfig:
    """Settings of a :class:`~daskscore.ParallelRunStep`.

    The names and meanings follow Azure ML's ``ParallelRunConfig`` so that its
    users recognise every field; see the README's semantics table.

    Parameters
    ----------
    entry_script
        Path of the script with ``init()`` and ``run(mini_batch)`` (relative to
        ``source_directory`` when that is given).
    source_directory
        Folder shipped to every worker with the script; importable from it.
    mini_batch_size
        FileDataset: number of files per ``run()`` call (default 10). TabularDataset:
        approximate bytes per call, an int or ``"64KB"``/``"1MB"``/``"1GB"``
        (powers of 1024, as in Azure ML) or ``"1.5 MiB"`` (default 1MB).
    error_threshold
        Failed items (files or rows) allowed over the whole input; the job fails
        when the count goes above it. ``-1`` ignores all failures.
    allowed_failed_count
        Failed mini-batches allowed; ``None`` or ``-1`` means no limit.
    allowed_failed_percent
        Percent (0-100) of failed mini-batches allowed; ``None`` means no limit.
    output_action
        ``"append_row"`` (collect what ``run()`` returns into one file) or
        ``"summary_only"``.
    append_row_file_name
        Name of the collected file; its extension (.txt, .csv, .parquet) picks the
        format. Default ``parallel_run_step.txt``.
    node_count, process_count_per_node
        Worker hosts and worker processes per host (``None``: number of cores).
    run_invocation_timeout
        Seconds one ``run()`` call may take before it is stopped: a number, or a
        duration string with a unit (``"90s"``, ``"2 minutes"``; stored as float
        seconds).
    run_max_try
        Tries per mini-batch (a raised exception, a bad return or a timeout leads
        to another try).
    logging_level
        Level of the entry script's logger and daskscore's logs.
    environment_variables
        Set before the script is imported, in every process that imports it.
    partition_keys
        Columns whose distinct value combinations each form one mini-batch
        (mutually exclusive with ``mini_batch_size``); for file inputs, keys of
        their ``partition_format``.
    init_timeout
        Seconds ``init()`` may take before its process is stopped (the try
        fails with ``INIT_ERROR``): a number or a duration string with a unit,
        like ``run_invocation_timeout``. ``None`` (the default): the settings
        ``daskscore.init-timeout.*``, ``max(600 s, 5 x run_invocation_timeout)``.
    """

    entry_script: str
    source_directory: str | None = None
    mini_batch_size: int | str | None = None
    error_threshold: int = -1
    allowed_failed_count: int | None = None
    allowed_failed_percent: float | None = None
    output_action: OutputAction | str = OutputAction.APPEND_ROW
    append_row_file_name: str | None = None
    node_count: int = 1
    process_count_per_node: int | None = None
    run_invocation_timeout: float | str = 60
    run_max_try: int = 3
    logging_level: str = "INFO"
    environment_variables: dict[str, str] | None = field(default=None)
    partition_keys: list[str] | None = None
    init_timeout: float | str | None = None

    def __post_init__(self) -> None:
        # each check takes the config and gives its field's (normalised) value; in
        # this order, so that the first bad field is the one reported
        for name, check in _FIELD_CHECKS:
            object.__setattr__(self, name, check(self))

    @property
    def output_file_name(self) -> str:
        """The collected file's name (``append_row_file_name`` or the default)."""
        return self.append_row_file_name or DEFAULT_APPEND_ROW_FILE_NAME

    @property
    def output_format(self) -> str:
        """``"txt"``, ``"csv"`` or ``"parquet"``, from the output file's extension."""
        return os.path.splitext(self.output_file_name)[1].lower().lstrip(".")

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain values (for reports, fingerprints and YAML)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = str(value) if isinstance(value, OutputAction) else value
        return out


# -- the checks of ParallelRunConfig's fields ----------------------------------------
# Each takes the config (earlier fields already checked) and returns the value its
# field keeps, or raises ConfigError.


def _check_entry_script(cfg: ParallelRunConfig) -> str:
    script = cfg.entry_script
    if not isinstance(script, str | os.PathLike) or not str(script):
        raise ConfigError("entry_script", script, "a path to a Python file")
    script = os.fspath(script)
    if not script.endswith(".py"):
        raise ConfigError("entry_script", script, "a Python file ending in .py")
    return script


def _check_source_directory(cfg: ParallelRunConfig) -> str | None:
    if cfg.source_directory is None:
        return None
    return os.fspath(cfg.source_directory)


def _check_mini_batch_size(cfg: ParallelRunConfig) -> int | str | None:
    size = cfg.mini_batch_size
    if size is None:
        return None
    if isinstance(size, float) and float(size).is_integer():
        size = int(size)
    parse_size(size)  # the FileDataset rule is checked by the step
    return size


def _check_partition_keys(cfg: ParallelRunConfig) -> list[str] | None:
    if cfg.partition_keys is None:
        return None
    keys = cfg.partition_keys
    if isinstance(keys, str):
        keys = [keys]
    if not keys or not all(isinstance(k, str) and k for k in keys):
        raise ConfigError(
            "partition_keys", cfg.partition_keys, "a non-empty list of names"
        )
    if cfg.mini_batch_size is not None:
        raise ConfigError(
            "partition_keys",
            cfg.partition_keys,
            "either partition_keys or mini_batch_size, not both",
        )
    return list(keys)


def _check_error_threshold(cfg: ParallelRunConfig) -> int:
    _check_int("error_threshold", cfg.error_threshold, -1, "an int >= -1")
    return cfg.error_threshold


def _check_allowed_failed_count(cfg: ParallelRunConfig) -> int | None:
    if cfg.allowed_failed_count is not None:
        _check_int(
            "allowed_failed_count",
            cfg.allowed_failed_count,
            -1,
            "an int >= -1, or None",
        )
    return cfg.allowed_failed_count


def _check_allowed_failed_percent(cfg: ParallelRunConfig) -> float | None:
    v = cfg.allowed_failed_percent
    if v is not None and (
        isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 100
    ):
        raise ConfigError(
            "allowed_failed_percent", v, "a number from 0 to 100, or None"
        )
    return v


def _check_output_action(cfg: ParallelRunConfig) -> OutputAction:
    try:
        return OutputAction(cfg.output_action)
    except ValueError:
        raise ConfigError(
            "output_action", cfg.output_action, '"append_row" or "summary_only"'
        ) from None


def _check_append_row_file_name(cfg: ParallelRunConfig) -> str | None:
    name = cfg.append_row_file_name
    if name is None:
        return None
    plain = (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and os.path.basename(name) == name
        and "/" not in name
        and "\\" not in name
    )
    if not plain:
        raise ConfigError(
            "append_row_file_name",
            name,
            'a plain file name without folders, e.g. "results.csv"',
        )
    if os.path.splitext(name)[1].lower() not in OUTPUT_FORMATS:
        raise ConfigError(
            "append_row_file_name",
            name,
            "a name ending in .txt, .csv or .parquet (the extension picks "
            "the format)",
        )
    return name


def _check_node_count(cfg: ParallelRunConfig) -> int:
    _check_int("node_count", cfg.node_count, 1, "an int >= 1")
    return cfg.node_count


def _check_process_count_per_node(cfg: ParallelRunConfig) -> int | None:
    if cfg.process_count_per_node is not None:
        _check_int(
            "process_count_per_node",
            cfg.process_count_per_node,
            1,
            "an int >= 1, or None for the number of cores",
        )
    return cfg.process_count_per_node


def _check_run_invocation_timeout(cfg: ParallelRunConfig) -> float | str:
    seconds = parse_timeout(cfg.run_invocation_timeout)
    if isinstance(cfg.run_invocation_timeout, str):
        return seconds
    return cfg.run_invocation_timeout


def _check_init_timeout(cfg: ParallelRunConfig) -> float | str | None:
    if cfg.init_timeout is None:
        return None
    seconds = parse_timeout(cfg.init_timeout, "init_timeout")
    if isinstance(cfg.init_timeout, str):
        return seconds
    return cfg.init_timeout


def _check_run_max_try(cfg: ParallelRunConfig) -> int:
    _check_int("run_max_try", cfg.run_max_try, 1, "an int >= 1")
    return cfg.run_max_try


def _check_logging_level(cfg: ParallelRunConfig) -> str:
    level = cfg.logging_level
    if not isinstance(level, str) or level.upper() not in LOGGING_LEVELS:
        raise ConfigError("logging_level", level, ", ".join(LOGGING_LEVELS))
    return level.upper()


def _check_environment_variables(cfg: ParallelRunConfig) -> dict[str, str] | None:
    env = cfg.environment_variables
    if env is None:
        return None
    if not isinstance(env, dict) or not all(isinstance(k, str) and k for k in env):
        raise ConfigError(
            "environment_variables", env, "a dict of names to string values"
        )
    return {k: str(v) for k, v in env.items()}


_FIELD_CHECKS: tuple[tuple[str, Callable[[ParallelRunConfig], Any]], ...] = (
    ("entry_script", _check_entry_script),
    ("source_directory", _check_source_directory),
    ("mini_batch_size", _check_mini_batch_size),
    ("partition_keys", _check_partition_keys),
    ("error_threshold", _check_error_threshold),
    ("allowed_failed_count", _check_allowed_failed_count),
    ("allowed_failed_percent", _check_allowed_failed_percent),
    ("output_action", _check_output_action),
    ("append_row_file_name", _check_append_row_file_name),
    ("node_count", _check_node_count),
    ("process_count_per_node", _check_process_count_per_node),
    ("run_invocation_timeout", _check_run_invocation_timeout),
    ("run_max_try", _check_run_max_try),
    ("logging_level", _check_logging_level),
    ("environment_variables", _check_environment_variables),
    ("init_timeout", _check_init_timeout),
)
