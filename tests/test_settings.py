"""daskscore's settings in dask.config (daskscore/_settings.py, daskscore.yaml)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import types
import warnings
from pathlib import Path

import dask.config
import pytest
import yaml

import daskscore as ds
from daskscore import _settings
from daskscore.cli.main import _SETTINGS
from daskscore.config import parse_size
from daskscore.engine import job as job_module
from daskscore.engine.placement import pack_mini_batches
from daskscore.registry._common import secrets_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def _leaves(config: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in config.items():
        if isinstance(value, dict):
            out |= _leaves(value, f"{prefix}{key}.")
        else:
            out.add(prefix + key)
    return out


def _run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("DASK_DASKSCORE", "DASKSCORE_"))}
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True,
        cwd=ROOT, env={**base, "PYTHONPATH": ROOT, **env}, timeout=120,
    )


@pytest.fixture(autouse=True)
def no_deprecated_variables(monkeypatch):
    for name in _settings.DEPRECATED_ENV:
        monkeypatch.delenv(name, raising=False)


# -- the defaults and their schema ------------------------------------------------


def test_schema_is_complete():
    """Every key of daskscore.yaml is in the schema and vice versa (as distributed)."""
    config = _load(_settings.DEFAULTS_FILE)
    schema = _load(_settings.SCHEMA_FILE)

    def check(c: dict, s: dict, where: str) -> None:
        assert set(c) == set(s["properties"]), where
        for key, value in c.items():
            if isinstance(value, dict):
                assert s["properties"][key]["type"] == "object", where + key
                check(value, s["properties"][key], f"{where}{key}.")
            else:
                assert s["properties"][key].get("description"), where + key

    check(config, schema, "")


def test_defaults_match_their_schema_types():
    """A light check of the JSON schema's types (jsonschema is not a dependency)."""
    types = {"string": str, "number": (int, float), "integer": int,
             "boolean": bool, "null": type(None), "object": dict}
    schema = _load(_settings.SCHEMA_FILE)["properties"]["daskscore"]
    for key in _leaves(_settings.DEFAULTS["daskscore"]):
        node = schema
        for part in key.split("."):
            node = node["properties"][part]
        allowed = node["type"] if isinstance(node["type"], list) else [node["type"]]
        assert isinstance(_settings._default(key), tuple(types[t] for t in allowed))


def test_every_setting_has_a_parser_and_a_default():
    assert set(_settings.KINDS) == _leaves(_settings.DEFAULTS["daskscore"])
    for key in _settings.KINDS:
        _settings.get(key)  # the shipped defaults parse


def test_the_defaults_are_loaded_into_dask_config():
    assert dask.config.get("daskscore.worker-wait") == "60s"
    assert _settings.get("worker-wait") == 60.0
    assert _settings.get("daskscore.worker-wait") == 60.0
    assert _settings.get("prefetch") is True
    assert _settings.get("pack.max-mini-batches") == 64
    assert _settings.get("pack.divisor") == 4
    assert _settings.get("model-cache") is None
    assert _settings.get("secrets-dir") is None
    assert _settings.get("init-timeout.minimum") == 600.0
    assert _settings.get("init-timeout.factor") == 5.0
    assert _settings.get("runner.shutdown-timeout") == 120.0
    assert _settings.get("runner.read-timeout") == 300.0
    assert _settings.get("runner.init-failures") == 3
    assert _settings.get("publish-interval") == 0.5
    assert _settings.get("cancel-poll-interval") == 1.0


def test_the_shipped_files_are_package_data():
    text = open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8").read()
    assert '"daskscore.yaml", "daskscore-schema.yaml"' in text


def test_an_unknown_key_is_an_error():
    with pytest.raises(KeyError, match="worker-wait"):
        _settings.get("worker-wiat")


# -- dask.config.set, environment variables --------------------------------------


def test_dask_config_set_changes_what_the_code_reads():
    with dask.config.set({"daskscore.worker-wait": "2 minutes"}):
        assert _settings.get("worker-wait") == 120.0
    with dask.config.set({"daskscore.worker_wait": 5}):  # dask's "_" == "-"
        assert _settings.get("worker-wait") == 5.0
    assert _settings.get("worker-wait") == 60.0


def test_the_job_waits_as_long_as_the_setting_says():
    class Cfg:
        node_count, process_count_per_node = 2, None

    class Client:
        class scheduler:
            address = "tcp://nowhere:8786"

        def scheduler_info(self, n_workers=-1):
            return {"workers": {"tcp://h1:1": {"name": "a", "host": "h1"}}}

    step = types.SimpleNamespace(config=Cfg(), name="wait-test", output="out")
    start = time.monotonic()
    with dask.config.set({"daskscore.worker-wait": "100ms"}):
        job = job_module.Job(step, Client(), ds.ProgressCallback())
    with pytest.raises(ds.JobError) as excinfo:
        job._connect()
    assert time.monotonic() - start < 5
    assert "after waiting 0.1 s" in str(excinfo.value)
    assert "daskscore.worker-wait" in str(excinfo.value)


def test_pack_settings_change_the_packs():
    assert max(len(p) for p in pack_mini_batches(list(range(10_000)), 2)) == 64
    with dask.config.set({"daskscore.pack.max-mini-batches": 8}):
        assert max(len(p) for p in pack_mini_batches(list(range(10_000)), 2)) == 8
    with dask.config.set({"daskscore.pack.divisor": 1}):
        assert len(pack_mini_batches(list(range(40)), 2)[0]) == 20


def test_init_timeout_is_a_minimum_and_a_factor():
    assert _settings.init_timeout(60) == 600.0
    assert _settings.init_timeout(200) == 1000.0
    with dask.config.set({"daskscore.init-timeout.minimum": "1 minute",
                          "daskscore.init-timeout.factor": 2}):
        assert _settings.init_timeout(10) == 60.0
        assert _settings.init_timeout(100) == 200.0


def test_the_environment_variable_sets_the_key(monkeypatch):
    monkeypatch.setenv("DASK_DASKSCORE__WORKER_WAIT", "90s")
    monkeypatch.setenv("DASK_DASKSCORE__RUNNER__READ_TIMEOUT", "10 minutes")
    try:
        dask.config.refresh()
        assert _settings.get("worker-wait") == 90.0
        assert _settings.get("runner.read-timeout") == 600.0
    finally:
        monkeypatch.delenv("DASK_DASKSCORE__WORKER_WAIT")
        monkeypatch.delenv("DASK_DASKSCORE__RUNNER__READ_TIMEOUT")
        dask.config.refresh()
    assert _settings.get("worker-wait") == 60.0


def test_the_environment_variable_in_a_new_process():
    out = _run_python(
        "from daskscore import _settings; print(_settings.get('worker-wait'), "
        "_settings.get('prefetch'))",
        DASK_DASKSCORE__WORKER_WAIT="7", DASK_DASKSCORE__PREFETCH="False",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["7.0", "False"]
    assert _settings.env_name("pack.max-mini-batches") == (
        "DASK_DASKSCORE__PACK__MAX_MINI_BATCHES")


def test_a_config_file_sets_the_key(tmp_path):
    (tmp_path / "daskscore.yaml").write_text("daskscore:\n  worker-wait: 3 minutes\n")
    out = _run_python(
        "from daskscore import _settings; print(_settings.get('worker-wait'))",
        DASK_CONFIG=str(tmp_path),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "180.0"


@pytest.mark.parametrize("key, bad", [
    ("worker-wait", "soon"), ("worker-wait", -1), ("cancel-poll-interval", 0),
    ("prefetch", "maybe"), ("pack.max-mini-batches", 0), ("runner.init-failures", 1.5),
    ("init-timeout.factor", 0), ("model-cache", 5),
])
def test_a_bad_value_is_a_config_error(key, bad):
    with dask.config.set({f"daskscore.{key}": bad}):
        with pytest.raises(ds.ConfigError) as excinfo:
            _settings.get(key)
    assert excinfo.value.field == f"daskscore.{key}"
    assert str(excinfo.value).startswith(f"daskscore.{key}={bad!r} is not allowed")


def test_folders_expand_the_home_folder():
    with dask.config.set({"daskscore.secrets-dir": "~/s"}):
        assert _settings.get("secrets-dir") == os.path.expanduser("~/s")


def test_the_secret_store_follows_the_setting(tmp_path):
    with dask.config.set({"daskscore.secrets-dir": str(tmp_path)}):
        assert secrets_file("ws1") == str(tmp_path / "ws1.json")


# -- the deprecated variables ----------------------------------------------------


def test_the_old_variable_still_works_and_warns(monkeypatch):
    monkeypatch.setenv("DASKSCORE_WORKER_WAIT", "5")
    with pytest.warns(FutureWarning, match="daskscore.worker-wait"):
        assert _settings.get("worker-wait") == 5.0
    with dask.config.set({"daskscore.worker-wait": "9s"}):  # the new key wins
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert _settings.get("worker-wait") == 9.0


@pytest.mark.parametrize("name, key, text, value", [
    ("DASKSCORE_PREFETCH", "prefetch", "0", False),
    ("DASKSCORE_PREFETCH", "prefetch", "1", True),
    ("DASKSCORE_MODEL_CACHE", "model-cache", "/tmp/models", "/tmp/models"),
    ("DASKSCORE_SECRETS_DIR", "secrets-dir", "/tmp/secrets", "/tmp/secrets"),
])
def test_every_old_variable_maps_to_its_key(monkeypatch, name, key, text, value):
    monkeypatch.setenv(name, text)
    with pytest.warns(FutureWarning, match=f"{name} environment variable is "
                                           f"deprecated.*daskscore.{key}"):
        assert _settings.get(key) == value


def test_importing_daskscore_emits_no_warning():
    out = _run_python(
        "import daskscore, daskscore._settings, daskscore.config, "
        "daskscore.engine.job, daskscore.worker.plugin, daskscore.registry.model; "
        "from daskscore import _settings; "
        "[_settings.get(k) for k in _settings.KINDS]"
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""


def test_submitted_jobs_carry_the_clients_settings():
    with dask.config.set({"daskscore.worker-wait": "2s", "daskscore.prefetch": False}):
        snap = _settings.snapshot()
    assert snap["daskscore.worker-wait"] == "2s"
    assert snap["daskscore.prefetch"] is False
    assert set(snap) == {f"daskscore.{k}" for k in _settings.KINDS}
    with dask.config.set(snap):
        assert _settings.get("worker-wait") == 2.0


# -- ParallelRunConfig: run_invocation_timeout and mini_batch_size ----------------


@pytest.mark.parametrize("text, seconds", [
    ("90s", 90.0), ("2 minutes", 120.0), ("1.5h", 5400.0), ("500ms", 0.5),
])
def test_run_invocation_timeout_takes_a_duration(text, seconds):
    cfg = ds.ParallelRunConfig(entry_script="score.py", run_invocation_timeout=text)
    assert cfg.run_invocation_timeout == seconds
    assert type(cfg.run_invocation_timeout) is float


@pytest.mark.parametrize("bad", ["soon", "0s", "-5s", "", "60"])
def test_run_invocation_timeout_rejects_bad_durations(bad):
    with pytest.raises(ds.ConfigError) as excinfo:
        ds.ParallelRunConfig(entry_script="score.py", run_invocation_timeout=bad)
    assert excinfo.value.field == "run_invocation_timeout"
    assert excinfo.value.value == bad
    assert "greater than 0" in str(excinfo.value)


@pytest.mark.parametrize("text, size", [
    ("1KB", 1024), ("1kb", 1024), ("64 MiB", 64 * 1024**2), ("1.5MiB", 1572864),
    ("1 kib", 1024), ("2GiB", 2 * 1024**3), ("1MB", 1024**2), ("0.5 KiB", 512),
])
def test_mini_batch_size_units(text, size):
    assert parse_size(text) == size
    ds.ParallelRunConfig(entry_script="score.py", mini_batch_size=text)


@pytest.mark.parametrize("bad", ["0.0001 KiB", "1 TiB", "1 kB B", "64 MiBs"])
def test_mini_batch_size_rejects_other_units(bad):
    with pytest.raises(ds.ConfigError) as excinfo:
        parse_size(bad)
    assert "KB, MB or GB" in str(excinfo.value)


def test_cli_passes_a_duration_through():
    convert = _SETTINGS["run_invocation_timeout"][0]
    assert convert("60") == 60.0
    assert convert("90s") == "90s"


def test_a_config_block_entered_before_daskscore_is_imported_keeps_the_defaults():
    """dask.config.set deletes the whole ``daskscore`` section on exit when it was
    entered before the defaults were loaded; the settings still read their
    defaults afterwards (a fresh interpreter: here _settings is imported already)."""
    code = (
        "import dask.config\n"
        "with dask.config.set({'daskscore.prefetch': False}):\n"
        "    from daskscore import _settings\n"
        "    inside = _settings.get('prefetch')\n"
        "print(inside, _settings.get('prefetch'), _settings.get('worker-wait'))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    done = subprocess.run([sys.executable, "-c", code], env=env, text=True,
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True", "60.0"]
