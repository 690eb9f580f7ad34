"""The ``daskscore`` command line.

Usage and configuration errors run ``daskscore.cli.main`` in-process (none of
them may start a cluster). A few real jobs run the installed console script in a
subprocess, each on a two-process embedded cluster.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from daskscore.cli import main
from daskscore.output.store import StateStore

DASKSCORE = Path(sys.executable).with_name("daskscore")

GOOD_SCRIPT = """\
def init():
    pass


def run(mini_batch):
    return list(mini_batch)
"""


@pytest.fixture(autouse=True)
def _restore_loggers():
    """main() quiets distributed's loggers for the process; undo it after each test."""
    names = ("", "distributed", "bokeh", "tornado")
    levels = {n: logging.getLogger(n).level for n in names}
    handlers = list(logging.getLogger().handlers)
    yield
    for n, level in levels.items():
        logging.getLogger(n).setLevel(level)
    logging.getLogger().handlers[:] = handlers


@pytest.fixture
def job(tmp_path):
    """A folder with a good script and three input files; returns base flags."""
    (tmp_path / "score.py").write_text(GOOD_SCRIPT)
    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        (data / f"img{i}.png").write_bytes(b"x")
    return tmp_path


def base_flags(folder: Path) -> list[str]:
    return ["run", "--entry-script", str(folder / "score.py"),
            "--input", str(folder / "data"), "--output", str(folder / "out"),
            "--no-progress"]


def run_main(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_error_line(err: str, *fragments: str) -> str:
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("daskscore: error: "), line
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


def assert_no_cluster_started(folder: Path) -> None:
    # a started cluster writes worker logs (logs/sys) and the commit state; a job
    # stopped before that may only explain itself in logs/job_result.txt
    assert not (folder / "out" / "logs" / "sys").exists()
    assert not (folder / "out" / ".daskscore" / "records").exists()
    result = folder / "out" / "logs" / "job_result.txt"
    if result.exists():
        assert "No data was processed" in result.read_text()


# -- usage errors -----------------------------------------------------------------


def test_no_command_prints_help_and_exits_2(capsys):
    code, out, _ = run_main(capsys, [])
    assert code == 2
    assert "usage: daskscore" in out
    assert "run" in out


def test_run_help_lists_the_flags(capsys):
    with pytest.raises(SystemExit) as excinfo:
        main(["run", "--help"])
    assert excinfo.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--entry-script", "--source-directory", "--input", "--input-type",
                 "--output", "--mini-batch-size", "--error-threshold",
                 "--allowed-failed-count", "--allowed-failed-percent",
                 "--output-action", "--append-row-file-name", "--node-count",
                 "--process-count-per-node", "--run-invocation-timeout",
                 "--run-max-try", "--logging-level", "--scheduler"):
        assert flag in out, flag


def test_unknown_command(capsys):
    code, _, err = run_main(capsys, ["frobnicate"])
    assert code == 2
    assert_one_error_line(err, "frobnicate")


def test_unknown_flag(capsys, job):
    code, _, err = run_main(capsys, [*base_flags(job), "--bogus-flag", "1"])
    assert code == 2
    assert_one_error_line(err, "--bogus-flag", "--help")


@pytest.mark.parametrize(
    "flag, value",
    [("--error-threshold", "many"), ("--run-max-try", "2.5"),
     ("--allowed-failed-percent", "ten"), ("--node-count", "x")],
)
def test_flag_with_wrong_type(capsys, job, flag, value):
    code, _, err = run_main(capsys, [*base_flags(job), flag, value])
    assert code == 2
    assert_one_error_line(err, flag, repr(value))
    assert_no_cluster_started(job)


def test_missing_entry_script_flag(capsys, job):
    code, _, err = run_main(capsys, ["run", "--input", str(job / "data"),
                                     "--output", str(job / "out")])
    assert code == 2
    assert_one_error_line(err, "--entry-script")


def test_missing_input_flag(capsys, job):
    code, _, err = run_main(capsys, ["run", "--entry-script", str(job / "score.py"),
                                     "--output", str(job / "out")])
    assert code == 2
    assert_one_error_line(err, "--input")


def test_missing_output_for_append_row(capsys, job):
    code, _, err = run_main(capsys, ["run", "--entry-script", str(job / "score.py"),
                                     "--input", str(job / "data")])
    assert code == 2
    assert_one_error_line(err, "output=None")


def test_env_flag_needs_name_and_value(capsys, job):
    code, _, err = run_main(capsys, [*base_flags(job), "--env", "NOEQUALS"])
    assert code == 2
    assert_one_error_line(err, "--env", "NOEQUALS", "NAME=VALUE")


# -- configuration errors ------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, fragments",
    [
        (["--mini-batch-size", "abc"], ["mini_batch_size='abc'"]),
        (["--mini-batch-size", "1.5MB"], ["mini_batch_size='1.5MB'"]),
        (["--mini-batch-size", "1MB"], ["mini_batch_size='1MB'", "FileDataset"]),
        (["--run-max-try", "0"], ["run_max_try=0", ">= 1"]),
        (["--error-threshold", "-5"], ["error_threshold=-5", ">= -1"]),
        (["--allowed-failed-count", "-2"], ["allowed_failed_count=-2"]),
        (["--allowed-failed-percent", "150"], ["allowed_failed_percent=150"]),
        (["--run-invocation-timeout", "0"], ["run_invocation_timeout=0"]),
        (["--append-row-file-name", "out.json"], ["append_row_file_name='out.json'"]),
        (["--append-row-file-name", "sub/out.txt"], ["append_row_file_name="]),
        (["--output-action", "everything"], ["output_action='everything'"]),
        (["--logging-level", "LOUD"], ["logging_level='LOUD'"]),
        (["--process-count-per-node", "0"], ["process_count_per_node=0"]),
        (["--name", "Bad_Name"], ["name='Bad_Name'", "3-32"]),
        (["--input-type", "images"], ["input_type='images'"]),
    ],
)
def test_config_errors_name_the_field_and_value(capsys, job, flags, fragments):
    code, out, err = run_main(capsys, [*base_flags(job), *flags])
    assert code == 2
    assert_one_error_line(err, *fragments)
    assert "Completed" not in out and "Failed" not in out
    assert_no_cluster_started(job)


def test_tabular_input_type_needs_a_table_format(capsys, job):
    code, _, err = run_main(capsys, [*base_flags(job), "--input-type", "tabular"])
    assert code == 2
    assert_one_error_line(err, str(job / "data"), ".csv")


def test_input_matching_nothing(capsys, job):
    pattern = str(job / "nothing" / "*.png")
    code, _, err = run_main(capsys, ["run", "--entry-script", str(job / "score.py"),
                                     "--input", pattern, "--output", str(job / "out"),
                                     "--no-progress"])
    assert code == 2
    assert_one_error_line(err, pattern)
    assert_no_cluster_started(job)


# -- entry script problems -------------------------------------------------------------


def test_missing_entry_script_file(capsys, job):
    missing = job / "nope.py"
    flags = base_flags(job)
    flags[flags.index("--entry-script") + 1] = str(missing)
    code, _, err = run_main(capsys, flags)
    assert code == 2
    assert_one_error_line(err, "nope.py", "not found")
    assert_no_cluster_started(job)


def test_entry_script_with_syntax_error(capsys, job):
    (job / "score.py").write_text(
        "def init():\n    pass\n\ndef run(mb)\n    return mb\n"
    )
    code, _, err = run_main(capsys, base_flags(job))
    assert code == 2
    line = assert_one_error_line(err, "score.py", "syntax error", "line 4")
    assert "SystemExit" not in line
    assert_no_cluster_started(job)


def test_entry_script_without_run(capsys, job):
    (job / "score.py").write_text("def init():\n    pass\n")
    code, _, err = run_main(capsys, base_flags(job))
    assert code == 2
    assert_one_error_line(err, "score.py", "run()")
    assert_no_cluster_started(job)


def test_entry_script_missing_in_source_directory(capsys, job):
    (job / "src").mkdir()
    code, _, err = run_main(capsys, [
        "run", "--entry-script", "score.py", "--source-directory", str(job / "src"),
        "--input", str(job / "data"), "--output", str(job / "out")])
    assert code == 2
    assert_one_error_line(err, "score.py", "source_directory")


# -- YAML job files ------------------------------------------------------------------


def test_job_file_with_unknown_keys(capsys, job):
    (job / "job.yaml").write_text(
        "entry_script: score.py\ninput: [data]\noutput: out\n"
        "mini_batch: 5\nthreshold: 3\n"
    )
    code, _, err = run_main(capsys, ["run", str(job / "job.yaml")])
    assert code == 2
    line = assert_one_error_line(err, "job.yaml", "mini_batch", "threshold")
    assert "mini_batch_size" in line  # the known keys are listed
    assert_no_cluster_started(job)


def test_job_file_with_invalid_yaml(capsys, job):
    (job / "job.yaml").write_text(
        "entry_script: score.py\ninput: [data\noutput: out\n"
    )
    code, _, err = run_main(capsys, ["run", str(job / "job.yaml")])
    assert code == 2
    assert_one_error_line(err, "job.yaml", "not valid YAML", "line")


def test_job_file_that_is_not_a_mapping(capsys, job):
    (job / "job.yaml").write_text("- entry_script\n- input\n")
    code, _, err = run_main(capsys, ["run", str(job / "job.yaml")])
    assert code == 2
    assert_one_error_line(err, "job.yaml", "mapping")


def test_job_file_not_found(capsys, job):
    code, _, err = run_main(capsys, ["run", str(job / "missing.yaml")])
    assert code == 2
    assert_one_error_line(err, "missing.yaml", "not found")


def test_job_file_bad_value_names_the_field(capsys, job):
    (job / "job.yaml").write_text(
        "entry_script: score.py\ninput: [data]\noutput: out\nrun_max_try: 0\n"
    )
    code, _, err = run_main(capsys, ["run", str(job / "job.yaml")])
    assert code == 2
    assert_one_error_line(err, "run_max_try=0")


def test_job_file_paths_are_relative_to_the_file(capsys, job, tmp_path_factory,
                                                 monkeypatch):
    # a missing script named in the job file is looked for beside the file
    (job / "job.yaml").write_text(
        "entry_script: other.py\ninput: [data]\noutput: out\n"
    )
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    code, _, err = run_main(capsys, ["run", str(job / "job.yaml")])
    assert code == 2
    assert_one_error_line(err, str(job / "other.py"))


def test_flag_overrides_job_file_value(capsys, job):
    # the file's value is fine, the flag's is not: the flag must win
    (job / "job.yaml").write_text(
        "entry_script: score.py\ninput: [data]\noutput: out\nrun_max_try: 2\n"
    )
    code, _, err = run_main(capsys, ["run", str(job / "job.yaml"),
                                     "--run-max-try", "-1"])
    assert code == 2
    assert_one_error_line(err, "run_max_try=-1")


# -- real jobs through the console script ---------------------------------------------

ARGV_SCRIPT = """\
import os
import sys

from daskscore import EntryScript


def init():
    global ARGS
    ARGS = " ".join(sys.argv[1:])


def run(mini_batch):
    assert EntryScript().arguments == sys.argv[1:]
    greeting = os.environ.get("GREETING", "-")
    return [f"{os.path.basename(p)} {greeting} {ARGS} | {' '.join(sys.argv[1:])}"
            for p in mini_batch]
"""

FAILING_SCRIPT = """\
import os


def init():
    pass


def run(mini_batch):
    if any(os.path.basename(p).startswith("bad") for p in mini_batch):
        raise RuntimeError("cannot score a bad file")
    return [os.path.basename(p) for p in mini_batch]
"""


def daskscore_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.pop("GREETING", None)
    return subprocess.run(
        [str(DASKSCORE), *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=180,
    )


def test_console_script_is_installed():
    assert DASKSCORE.is_file(), f"{DASKSCORE} missing: pip install -e . first"


def test_job_file_input_string_is_relative_to_the_file(capsys, job, tmp_path_factory,
                                                       monkeypatch):
    (job / "job.yaml").write_text(
        "entry_script: score.py\ninput: nothing/*.png\noutput: out\n"
    )
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    code, _, err = run_main(capsys, ["run", str(job / "job.yaml")])
    assert code == 2
    assert_one_error_line(err, str(job / "nothing" / "*.png"))


@pytest.mark.slow
def test_real_run_from_job_file_with_flag_overrides_and_arguments(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "score.py").write_text(ARGV_SCRIPT)
    data = project / "data"
    data.mkdir()
    names = [f"img{i:02d}.png" for i in (4, 0, 3, 1, 2)]
    for name in names:
        (data / name).write_bytes(b"x")
    # paths in the file are relative to the file; flags override the file
    (project / "job.yaml").write_text(textwrap.dedent("""\
        entry_script: score.py
        input: [data]
        output: yaml-out
        mini_batch_size: 2
        process_count_per_node: 2
        append_row_file_name: results.txt
        arguments: ["--from-yaml"]
        environment_variables:
          GREETING: hello
    """))
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()

    proc = daskscore_cli(
        ["run", str(project / "job.yaml"), "--output", "flag-out",
         "--env", "GREETING=hi", "--", "--scale", "3", "--mode=fast"],
        cwd=cwd,
    )

    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "Completed:" in proc.stdout
    assert "5 of 5 items succeeded" in proc.stdout
    out = cwd / "flag-out"  # the flag's output, relative to where we ran
    assert not (project / "yaml-out").exists()
    output_file = out / "results.txt"  # the file's setting where no flag is given
    assert f"Output: {output_file}" in proc.stdout
    assert f"Logs: {out / 'logs'}/job_result.txt" in proc.stdout
    lines = output_file.read_text().splitlines()
    # arguments after -- replace the file's; --env overrides the file's variable
    args = "--scale 3 --mode=fast"
    assert lines == [f"{n} hi {args} | {args}" for n in sorted(names)]
    # progress (on stderr) starts with the dashboard link
    assert "Dask dashboard: http" in proc.stderr
    # the embedded scheduler runs in this process; its INFO chatter is not for users
    chatter = [line for line in proc.stderr.splitlines()
               if any(s in line for s in ("State start", "Scheduler at",
                                          "Register worker", "Receive client"))]
    assert chatter == [], "\n".join(chatter)


@pytest.mark.slow
def test_real_run_over_error_threshold_exits_1(tmp_path):
    (tmp_path / "score.py").write_text(FAILING_SCRIPT)
    data = tmp_path / "data"
    data.mkdir()
    for name in ["a0.txt", "a1.txt", "bad2.txt", "bad3.txt", "c4.txt", "c5.txt"]:
        (data / name).write_text(name)

    proc = daskscore_cli(
        ["run", "--entry-script", "score.py", "--input", "data", "--output", "out",
         "--mini-batch-size", "1", "--error-threshold", "0", "--run-max-try", "1",
         "--process-count-per-node", "1", "--no-progress"],
        cwd=tmp_path,
    )

    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "Failed:" in proc.stdout
    assert "error_threshold=0" in proc.stdout
    out = tmp_path / "out"
    assert f"Logs: {out / 'logs'}/job_result.txt" in proc.stdout
    report = (out / "logs" / "job_result.txt").read_text()
    assert "Failed" in report
    # what was scored stays on disk, and only good files are in it: one worker
    # scores in input order, so a0 and a1 were done before bad2 failed
    scored = (out / "parallel_run_step.txt").read_text().splitlines()
    good = ["a0.txt", "a1.txt", "c4.txt", "c5.txt"]
    assert scored[:2] == ["a0.txt", "a1.txt"], scored
    assert scored == [name for name in good if name in scored], scored


@pytest.mark.parametrize("how", ["flag", "job file"])
def test_csv_multi_line_reaches_the_csv_inputs(tmp_path, how):
    import importlib

    # the module (daskscore.cli.main is also the name of its main() function)
    cli = importlib.import_module("daskscore.cli.main")

    (tmp_path / "t.csv").write_text('id,text\n1,"a\nb"\n')
    (tmp_path / "score.py").write_text("def init(): pass\ndef run(b): return b\n")
    argv = ["run", "--entry-script", str(tmp_path / "score.py"),
            "--input", str(tmp_path / "t.csv"), "--output", str(tmp_path / "out")]
    if how == "flag":
        argv.append("--csv-multi-line")
    else:
        (tmp_path / "job.yaml").write_text("csv_multi_line: true\n")
        argv.insert(1, str(tmp_path / "job.yaml"))
    args = cli._build_parser().parse_args(argv)
    step = cli._step_from_settings(cli._settings(args, []))
    assert step.inputs[0].read_options["support_multi_line"] is True
    specs, _ = step.plan()
    assert len(specs) == 1 and specs[0].stop == (tmp_path / "t.csv").stat().st_size


def _cli_step(argv: list[str], job_file: Path | None = None):
    """The step ``daskscore run ARGV`` would run (built as the command does)."""
    import importlib

    cli = importlib.import_module("daskscore.cli.main")
    if job_file is not None:
        argv = [argv[0], str(job_file), *argv[1:]]
    args = cli._build_parser().parse_args(argv)
    return cli._step_from_settings(cli._settings(args, []))


def test_existing_input_paths_with_glob_characters_are_taken_as_named(tmp_path):
    """B6: --input "in/globnames/weird[1].csv" and --input "in/br[ack]ets"."""
    (tmp_path / "score.py").write_text(GOOD_SCRIPT)
    names = tmp_path / "in" / "globnames"
    names.mkdir(parents=True)
    (names / "weird[1].csv").write_text("a\n1\n2\n")
    folder = tmp_path / "in" / "br[ack]ets"
    folder.mkdir()
    (folder / "x.csv").write_text("a\n3\n")
    for given, expected in [(names / "weird[1].csv", [names / "weird[1].csv"]),
                            (folder, [folder / "x.csv"])]:
        step = _cli_step(["run", "--entry-script", str(tmp_path / "score.py"),
                          "--input", str(given), "--output", str(tmp_path / "out")])
        assert step.inputs[0].format == "csv"
        specs, _ = step.plan()
        assert [s.paths[0] for s in specs] == [str(p) for p in expected]


@pytest.mark.parametrize("how", ["flag", "job file"])
def test_encoding_reaches_the_text_inputs(tmp_path, how):
    (tmp_path / "score.py").write_text(GOOD_SCRIPT)
    (tmp_path / "t.csv").write_bytes("city\nZürich\n".encode("latin-1"))
    (tmp_path / "t.jsonl").write_bytes('{"city": "Genève"}\n'.encode("latin-1"))
    argv = ["run", "--entry-script", str(tmp_path / "score.py"),
            "--input", str(tmp_path / "t.csv"), "--input", str(tmp_path / "t.jsonl"),
            "--output", str(tmp_path / "out")]
    job_file = None
    if how == "flag":
        argv += ["--encoding", "latin-1"]
    else:
        job_file = tmp_path / "job.yaml"
        job_file.write_text("encoding: latin-1\n")
    step = _cli_step(argv, job_file)
    assert [d.read_options.get("encoding") for d in step.inputs] == ["latin-1"] * 2
    assert step.inputs[0].to_pandas_dataframe()["city"].tolist() == ["Zürich"]
    assert step.inputs[1].to_pandas_dataframe()["city"].tolist() == ["Genève"]


def test_table_folder_with_job_markers_is_a_table(tmp_path):
    (tmp_path / "score.py").write_text(GOOD_SCRIPT)
    data = tmp_path / "table"
    data.mkdir()
    (data / "part-0000.csv").write_text("a\n1\n2\n")
    for marker in ("_SUCCESS", "_committed_4711", "_started_4711",
                   "part-0000.csv.crc", ".part-0000.csv.crc"):
        (data / marker).write_bytes(b"\x00")
    step = _cli_step(["run", "--entry-script", str(tmp_path / "score.py"),
                      "--input", str(data), "--output", str(tmp_path / "out"),
                      "--mini-batch-size", "8KB"])
    assert step.inputs[0].format == "csv"
    specs, _ = step.plan()
    assert [s.paths[0] for s in specs] == [str(data / "part-0000.csv")]


def test_table_folder_with_other_files_names_them(capsys, tmp_path):
    (tmp_path / "score.py").write_text(GOOD_SCRIPT)
    data = tmp_path / "data"
    data.mkdir()
    for name in ("a.csv", "b.csv", "notes.txt", "extra.json", "_SUCCESS"):
        (data / name).write_text("a\n1\n")
    code, out, err = run_main(capsys, [*base_flags(tmp_path),
                                       "--mini-batch-size", "8KB"])
    assert code == 2
    line = assert_one_error_line(err, str(data), "extra.json", "notes.txt",
                                 "--input-type file")
    assert "a.csv" not in line and "_SUCCESS" not in line
    assert_no_cluster_started(tmp_path)
# Items from GATE_AFTER on wait (bounded) for GATE_FILE; each scored item leaves
# a token in TOKEN_DIR.
HELD_SCRIPT = """\
import os
import time


def init():
    pass


def run(mini_batch):
    out = []
    for path in mini_batch:
        number = int(open(path).read())
        if number >= int(os.environ["GATE_AFTER"]):
            deadline = time.time() + 120
            gate = os.environ["GATE_FILE"]
            while not os.path.exists(gate) and time.time() < deadline:
                time.sleep(0.05)
        token = os.path.join(os.environ["TOKEN_DIR"], f"{number}-{os.getpid()}")
        open(token, "w").close()
        out.append(number)
    return out
"""


def _wait_for(predicate, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _running(procs: list[psutil.Process]) -> list[psutil.Process]:
    left = []
    for p in procs:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                left.append(p)
        except psutil.NoSuchProcess:
            continue
    return left


@pytest.mark.slow
def test_sigterm_stops_like_ctrl_c_and_the_same_command_resumes(tmp_path):
    (tmp_path / "score.py").write_text(HELD_SCRIPT)
    data = tmp_path / "data"
    data.mkdir()
    for i in range(8):
        (data / f"n{i}.txt").write_text(f"{i}\n")
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    gate = tmp_path / "gate-open"
    env_flags = ["--env", "GATE_AFTER=3", "--env", f"GATE_FILE={gate}",
                 "--env", f"TOKEN_DIR={tokens}"]
    # the worktree's daskscore (PYTHONPATH), as `python -m daskscore.cli`
    cmd = [sys.executable, "-m", "daskscore.cli", "run", "--entry-script", "score.py",
           "--input", "data", "--output", "out", "--mini-batch-size", "1",
           "--process-count-per-node", "2", "--no-progress", *env_flags]
    store = StateStore(str(tmp_path / "out"))
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    children: list[psutil.Process] = []
    try:
        _wait_for(lambda: len(store.load_records()) >= 3,
                  "3 committed mini-batches")
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
        committed = len(store.load_records())
        assert proc.returncode == 143, (proc.returncode, out, err)
        assert "Traceback" not in err, err
        assert err.strip().splitlines()[-1] == (
            "daskscore: terminated (SIGTERM); committed mini-batches are kept, run "
            "the same command again to resume"), err
        # the embedded cluster was closed: its workers and runners are gone
        _wait_for(lambda: not _running(children), "the embedded workers to exit", 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
        for p in _running(children):  # what a silent exit left behind
            p.kill()

    gate.write_text("open")
    again = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True,
                           timeout=180)
    assert again.returncode == 0, again.stdout + again.stderr
    report = json.loads((tmp_path / "out" / "logs" / "job_report.json").read_text())
    assert report["resumed_mini_batches"] == committed >= 3
    assert (tmp_path / "out" / "parallel_run_step.txt").read_text().split() == [
        str(i) for i in range(8)]
