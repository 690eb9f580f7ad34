"""init_timeout: a ParallelRunConfig field, the --init-timeout flag, the job-file
key; and the daskscore.runner.memory-limit setting. No cluster is started."""

from __future__ import annotations

import importlib

import dask.config
import pytest

import daskscore as ds
from daskscore import _settings
from daskscore.engine.jobspec import _init_timeout

# the module (daskscore.cli.main is also the name of its main() function)
cli = importlib.import_module("daskscore.cli.main")


@pytest.mark.parametrize("value, seconds", [
    (30, 30), (1.5, 1.5), ("90s", 90.0), ("10 minutes", 600.0)])
def test_init_timeout_takes_seconds_or_a_duration(value, seconds):
    cfg = ds.ParallelRunConfig(entry_script="score.py", init_timeout=value)
    assert cfg.init_timeout == seconds
    assert _init_timeout(cfg) == seconds


def test_init_timeout_defaults_to_the_settings_rule():
    cfg = ds.ParallelRunConfig(entry_script="score.py", run_invocation_timeout=200)
    assert cfg.init_timeout is None
    assert _init_timeout(cfg) == 1000.0
    with dask.config.set({"daskscore.init-timeout.minimum": "1 minute",
                          "daskscore.init-timeout.factor": 1}):
        assert _init_timeout(cfg) == 200.0


@pytest.mark.parametrize("bad", [0, -1, "60", "soon", True])
def test_a_bad_init_timeout_names_the_field(bad):
    with pytest.raises(ds.ConfigError) as info:
        ds.ParallelRunConfig(entry_script="score.py", init_timeout=bad)
    assert info.value.field == "init_timeout"
    assert str(info.value).startswith(f"init_timeout={bad!r} is not allowed")


@pytest.fixture
def job(tmp_path):
    (tmp_path / "score.py").write_text("def init(): pass\ndef run(b): return b\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("a")
    return tmp_path


def _step(argv):
    args = cli._build_parser().parse_args(argv)
    return cli._step_from_settings(cli._settings(args, []))


def _argv(folder):
    return ["run", "--entry-script", str(folder / "score.py"),
            "--input", str(folder / "data"), "--output", str(folder / "out")]


@pytest.mark.parametrize("value, seconds", [("45", 45.0), ("2 minutes", 120.0)])
def test_init_timeout_flag_reaches_the_config(job, value, seconds):
    step = _step([*_argv(job), "--init-timeout", value])
    assert step.config.init_timeout == seconds


def test_init_timeout_job_file_key_and_the_flag_overrides_it(job):
    (job / "job.yaml").write_text("init_timeout: 5 minutes\n")
    argv = _argv(job)
    argv.insert(1, str(job / "job.yaml"))
    assert _step(argv).config.init_timeout == 300.0
    assert _step([*argv, "--init-timeout", "7"]).config.init_timeout == 7.0


def test_a_bad_init_timeout_flag_names_the_field(job):
    with pytest.raises(ds.ConfigError) as info:
        _step([*_argv(job), "--init-timeout", "never"])
    assert str(info.value).startswith("init_timeout='never' is not allowed")


def test_init_timeout_does_not_change_the_fingerprint(job):
    """It decides how long init() may take, not the output: a job resumes."""
    base = _step(_argv(job))
    longer = _step([*_argv(job), "--init-timeout", "1 hour"])
    assert base._fingerprint("x", "p") == longer._fingerprint("x", "p")


@pytest.mark.parametrize("value, parsed", [
    (None, None), ("4GiB", 4 << 30), ("1500MB", 1_500_000_000), (1 << 30, 1 << 30)])
def test_memory_limit_setting(value, parsed):
    with dask.config.set({"daskscore.runner.memory-limit": value}):
        assert _settings.get("runner.memory-limit") == parsed


@pytest.mark.parametrize("bad", ["lots", 0, True])
def test_a_bad_memory_limit_is_a_config_error(bad):
    with dask.config.set({"daskscore.runner.memory-limit": bad}):
        with pytest.raises(ds.ConfigError) as info:
            _settings.get("runner.memory-limit")
    assert info.value.field == "daskscore.runner.memory-limit"
