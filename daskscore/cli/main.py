"""``daskscore`` command line: a thin front end over the Python API.

Exit codes: 0 the job Completed, 1 the job Failed (or could not run), 2 a usage or
configuration error, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM). Errors
print one line saying what, where and what to do.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
from collections.abc import Sequence
from typing import Any

from ..config import ParallelRunConfig
from ..datasets import dataset_from_format
from ..engine import detached as remote
from ..errors import ConfigError, DaskScoreError, UsageError
from ..io._common import COMPRESSED_SUFFIXES
from ..output.store import StateStore
from ..progress import TextProgress
from ..step import ParallelRunStep
from ..storage import leaving_out, url_to_fs, without_own_files
from ..v2jobs.spec import read_yaml
from .runs import add_runs_commands, run_runs_command
from .status import show_status
from .v2run import is_v2_file, run_v2

__all__ = ["main"]

_TABULAR_EXT = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".ndjson": "jsonl",
}

def _seconds(text: str) -> float | str:
    """A number of seconds, or the text of a duration ("90s", "2 minutes") that
    ParallelRunConfig parses (and refuses with a ConfigError when it is wrong)."""
    try:
        return float(text)
    except ValueError:
        return text


# flag name -> (type, help); the YAML job file uses the same names with underscores
_SETTINGS: dict[str, tuple[Any, str]] = {
    "entry_script": (str, "the script with init() and run(mini_batch)"),
    "source_directory": (str, "folder shipped with the script (importable from it)"),
    "input_type": (
        str,
        "file or tabular (default: inferred from the extension; "
        ".csv/.tsv/.parquet/.jsonl are tabular)",
    ),
    "output": (str, "output folder (local path or URL)"),
    "mini_batch_size": (
        str,
        'files per run() call ("10"), or bytes for tables ("64KB", "1MB")',
    ),
    "error_threshold": (int, "failed items allowed (-1: ignore all failures)"),
    "allowed_failed_count": (int, "failed mini-batches allowed (-1: no limit)"),
    "allowed_failed_percent": (float, "percent of failed mini-batches allowed"),
    "output_action": (str, "append_row or summary_only"),
    "append_row_file_name": (str, "collected file name; .txt, .csv or .parquet"),
    "node_count": (int, "worker hosts to use"),
    "process_count_per_node": (int, "worker processes per host (default: cores)"),
    "run_invocation_timeout": (
        _seconds,
        'seconds one run() call may take, or a duration ("90s", "2 minutes")',
    ),
    "run_max_try": (int, "tries per mini-batch"),
    "init_timeout": (
        _seconds,
        "seconds init() may take, or a duration (\"10 minutes\"); default: "
        "max(600 s, 5 x run_invocation_timeout)",
    ),
    "logging_level": (str, "DEBUG, INFO, WARNING or ERROR"),
    "scheduler": (
        str,
        "address of an existing Dask scheduler, e.g. "
        "tcp://10.0.0.5:8786 (default: start an embedded cluster)",
    ),
    "name": (str, "step name (default: derived from the script)"),
    "encoding": (
        str,
        "text encoding of CSV/TSV/JSON-lines inputs (default utf-8), e.g. latin-1",
    ),
}
_CONFIG_FIELDS = (
    "entry_script",
    "source_directory",
    "mini_batch_size",
    "error_threshold",
    "allowed_failed_count",
    "allowed_failed_percent",
    "output_action",
    "append_row_file_name",
    "node_count",
    "process_count_per_node",
    "run_invocation_timeout",
    "run_max_try",
    "logging_level",
    "environment_variables",
    "partition_keys",
    "init_timeout",
)
_YAML_ONLY = {
    "csv_multi_line",
    "wait_for_lock",
    "input",
    "arguments",
    "environment_variables",
    "storage_options",
    "output_storage_options",
    "partition_keys",
}


class _Terminated(KeyboardInterrupt):
    """SIGTERM: stopped like Ctrl-C (the cluster closed, committed work kept)."""


def _on_sigterm(signum, frame) -> None:
    # a second SIGTERM while the job is being stopped ends the process at once
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise _Terminated()


def _catch_sigterm():
    """Treat SIGTERM like Ctrl-C; returns the handler to restore (None: not set)."""
    try:
        return signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: leave signals alone
        return None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit code 2
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _add_connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tls-ca-file", default=None, help="CA certificate of a TLS-secured cluster"
    )
    parser.add_argument("--tls-cert", default=None, help="client certificate (TLS)")
    parser.add_argument("--tls-key", default=None, help="client private key (TLS)")


def _add_job_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_file", nargs="?", help="YAML job file")
    parser.add_argument(
        "--input",
        action="append",
        default=None,
        help="input glob, folder or file (repeatable)",
    )
    for key, (kind, text) in _SETTINGS.items():
        parser.add_argument(
            "--" + key.replace("_", "-"), dest=key, type=kind, default=None, help=text
        )
    parser.add_argument(
        "--env",
        action="append",
        default=None,
        metavar="NAME=VALUE",
        help="environment variable for the script (repeatable)",
    )
    parser.add_argument(
        "--csv-multi-line",
        action="store_true",
        default=None,
        help="CSV/TSV values may hold quoted line breaks: never split a file "
        "(each file is one mini-batch)",
    )
    parser.add_argument(
        "--wait-for-lock",
        action="store_true",
        default=None,
        help="if another job is writing into the output folder, wait for it to "
        "end instead of refusing (exit 1) at once",
    )
    _add_connection_flags(parser)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="daskscore", description="Batch scoring on Dask.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    run = sub.add_parser(
        "run",
        help="run a scoring job",
        description="Run a scoring job. Settings come from flags and/or a YAML job "
        "file (keys are the flag names with underscores); flags "
        "override the file. Everything after '--' is passed to the "
        "script as its arguments. Running the same job again into the "
        "same output resumes it. An Azure ML v2 file (type: pipeline, "
        "parallel or command) runs as it is: 'daskscore run pipeline.yml "
        "--help'.",
    )
    _add_job_flags(run)
    run.add_argument(
        "--rerun-failed",
        metavar="OUTPUT_DIR",
        default=None,
        help="score again only the mini-batches recorded as failed in "
        "OUTPUT_DIR (e.g. after fixing the script) and rebuild "
        "the collected output",
    )
    run.add_argument(
        "--no-progress", action="store_true", help="do not show the progress bar"
    )
    submit = sub.add_parser(
        "submit",
        help="start a job on a cluster and return its id at once",
        description="Start a job on the cluster given by --scheduler and print its "
        "id; the job goes on after this command exits.",
    )
    _add_job_flags(submit)
    add_runs_commands(sub)
    for verb, text in (
        ("status", "show the state of a submitted job"),
        ("wait", "follow a submitted job until it ends"),
        ("cancel", "stop a submitted job (committed work is kept)"),
    ):
        cmd = sub.add_parser(verb, help=text, description=text)
        cmd.add_argument("job_id")
        cmd.add_argument(
            "--scheduler", required=True, help="address of the Dask scheduler"
        )
        _add_connection_flags(cmd)
        if verb == "status":
            cmd.add_argument(
                "--json", action="store_true",
                help="print the job's state as the dashboard's JSON route serves it",
            )
            cmd.add_argument(
                "--once", action="store_true",
                help="print once (the default when not on a terminal); on a "
                "terminal the view refreshes until Ctrl-C",
            )
    return parser


def _connect(address: str, args: argparse.Namespace):
    """A client of the scheduler at ``address`` (TLS when certificates are given)."""
    from distributed import Client

    security = None
    if args.tls_ca_file or args.tls_cert or args.tls_key:
        from distributed.security import Security

        security = Security(
            tls_ca_file=args.tls_ca_file,
            tls_client_cert=args.tls_cert,
            tls_client_key=args.tls_key,
            require_encryption=True,
        )
        if address.startswith("tcp://"):
            address = "tls://" + address[len("tcp://") :]
    try:
        return Client(address, timeout="20s", security=security)
    except Exception as exc:  # noqa: BLE001 - any failure to connect is one line
        raise UsageError(
            f"cannot connect to the Dask scheduler at {address}: "
            f"{type(exc).__name__}: {exc}; check the "
            "address, that the scheduler is running, and the TLS certificates"
        ) from None


def _load_job_file(path: str) -> dict[str, Any]:
    data = read_yaml(path, "job file", empty_ok=True)
    known = set(_SETTINGS) | _YAML_ONLY
    unknown = sorted(set(data) - known)
    if unknown:
        raise UsageError(
            f"job file {path}: unknown key(s) {', '.join(unknown)}; known keys: "
            f"{', '.join(sorted(known))}"
        )
    base = os.path.dirname(os.path.abspath(path))
    # relative paths in a job file are relative to the file
    for key in ("entry_script", "source_directory", "output"):
        value = data.get(key)
        if isinstance(value, str) and "://" not in value and not os.path.isabs(value):
            if key != "entry_script" or not data.get("source_directory"):
                data[key] = os.path.join(base, value)
    inputs = data.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    if inputs is not None:
        data["input"] = [
            i
            if "://" in str(i) or os.path.isabs(str(i))
            else os.path.join(base, str(i))
            for i in inputs
        ]
    return data


# files that sit beside a table's data and are not data: job markers (Spark,
# Hadoop, Databricks) and checksums; dot files are left out as well
_MARKER_PREFIXES = ("_SUCCESS", "_committed_", "_started_")
_MARKER_SUFFIXES = (".crc",)


def _is_marker(name: str) -> bool:
    return (
        name.startswith(".")
        or name.startswith(_MARKER_PREFIXES)
        or name.lower().endswith(_MARKER_SUFFIXES)
    )


def _ext_type(path: str) -> str:
    """'csv', 'tsv', 'parquet', 'jsonl' or 'file' from a name's extension."""
    text = path.rstrip("/")
    for suffix in COMPRESSED_SUFFIXES:
        if text.endswith(suffix):
            text = text[: -len(suffix)]
    return _TABULAR_EXT.get(os.path.splitext(text)[1].lower(), "file")


def _infer_type(path: str) -> str:
    """'csv', 'tsv', 'parquet', 'jsonl' or 'file' from an input's extension.

    A folder takes the type of its files, markers (``_SUCCESS``, ``.crc``, ...)
    left out; a folder of table files mixed with other files is an error that
    names the odd ones out.
    """
    kind = _ext_type(path)
    if kind != "file" or "://" in path or not os.path.isdir(path):
        return kind
    root = os.path.abspath(path)
    found = {
        os.path.join(folder, name): {}
        for folder, _dirs, files in os.walk(root)
        for name in files
        if not _is_marker(name)
    }
    # daskscore's own output is never input (the listing leaves it out too)
    found = without_own_files(url_to_fs(root)[0], found, root, path)
    by_kind: dict[str, list[str]] = {}
    for file in found:
        by_kind.setdefault(_ext_type(file), []).append(os.path.relpath(file, root))
    tables = [k for k in by_kind if k != "file"]
    if not tables:
        return "file"
    if len(by_kind) == 1:
        return tables[0]
    main = max(tables, key=lambda k: len(by_kind[k]))
    odd = sorted(f for k, names in by_kind.items() if k != main for f in names)
    shown = ", ".join(odd[:5]) + (f" and {len(odd) - 5} more" if len(odd) > 5 else "")
    raise UsageError(
        f"input {path}: the folder holds {main} files and {len(odd)} other "
        f"file(s): {shown}; remove them or give a glob such as "
        f"'{os.path.join(path, '*' + _first_ext(main))}', or score every file "
        "as a file with --input-type file"
    )


def _first_ext(kind: str) -> str:
    return next(ext for ext, k in _TABULAR_EXT.items() if k == kind)


def _datasets(
    inputs: list[str],
    input_type: str | None,
    storage_options: dict[str, Any],
    csv_multi_line: bool = False,
    encoding: str | None = None,
    output: tuple[str | None, dict[str, Any] | None] = (None, None),
) -> list:
    if input_type not in (None, "file", "tabular"):
        raise ConfigError("input_type", input_type, '"file" or "tabular"')
    out = []
    for path in inputs:
        with leaving_out(*output):  # the step's output folder is never input
            kind = "file" if input_type == "file" else _infer_type(path)
        if input_type == "tabular" and kind == "file":
            raise UsageError(
                f"input {path}: cannot tell the table format; use a .csv, .tsv, "
                ".parquet or .jsonl path (or a folder of them)"
            )
        text = {"encoding": encoding} if encoding else {}
        if kind in ("csv", "tsv"):
            read_options = {
                "separator": "\t" if kind == "tsv" else ",",
                "support_multi_line": csv_multi_line,
                **text,
            }
            out.append(dataset_from_format("csv", path, storage_options, read_options))
        elif kind == "jsonl":
            out.append(dataset_from_format(kind, path, storage_options, text))
        else:
            out.append(dataset_from_format(kind, path, storage_options))
    return out


def _step_name(settings: dict[str, Any]) -> str:
    if settings.get("name"):
        return settings["name"]
    stem = os.path.splitext(os.path.basename(settings["entry_script"]))[0]
    name = re.sub(r"[^a-z0-9-]+", "-", stem.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"job-{name}"
    name = name[:32].rstrip("-")
    return name if len(name) >= 3 else f"{name}-job"


def _settings(args: argparse.Namespace, script_args: list[str]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if args.job_file:
        settings.update(_load_job_file(args.job_file))
    for key in _SETTINGS:
        value = getattr(args, key)
        if value is not None:
            settings[key] = value
    if args.input:
        settings["input"] = args.input
    if getattr(args, "csv_multi_line", None):
        settings["csv_multi_line"] = True
    if getattr(args, "wait_for_lock", None):
        settings["wait_for_lock"] = True
    if args.env:
        env = dict(settings.get("environment_variables") or {})
        for item in args.env:
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise UsageError(f"--env {item!r}: use NAME=VALUE")
            env[name] = value
        settings["environment_variables"] = env
    if script_args:
        settings["arguments"] = script_args
    return settings


def _step_from_settings(settings: dict[str, Any]):
    if not settings.get("entry_script"):
        raise UsageError(
            "no entry script: give --entry-script or entry_script in the job file"
        )
    if not settings.get("input"):
        raise UsageError("no input: give --input (repeatable) or input in the job file")
    config = ParallelRunConfig(
        **{k: settings[k] for k in _CONFIG_FIELDS if settings.get(k) is not None}
    )
    datasets = _datasets(
        list(settings["input"]),
        settings.get("input_type"),
        dict(settings.get("storage_options") or {}),
        csv_multi_line=bool(settings.get("csv_multi_line")),
        encoding=settings.get("encoding"),
        output=(settings.get("output"), settings.get("output_storage_options")),
    )
    return ParallelRunStep(
        name=_step_name(settings),
        parallel_run_config=config,
        inputs=datasets,
        output=settings.get("output"),
        arguments=settings.get("arguments") or [],
        storage_options=settings.get("output_storage_options"),
    )


def _rerun_step(output_dir: str, settings: dict[str, Any]):
    """The step to rerun: from the flags when given, else from the output's manifest."""
    if settings.get("entry_script"):
        settings.setdefault("output", output_dir)
        return _step_from_settings(settings)
    store = StateStore(output_dir, settings.get("output_storage_options"))
    manifest = store.read_manifest()
    if not manifest or not manifest.get("settings"):
        raise UsageError(
            f"--rerun-failed: {output_dir} holds no earlier daskscore "
            "run (no .daskscore/manifest.json)"
        )
    return ParallelRunStep.from_settings(
        manifest["settings"], settings.get("storage_options")
    )


def _print_result(result) -> int:
    counts = (
        f"{result.succeeded_items} of {result.total_items} items succeeded, "
        f"{result.failed_items} failed ({result.mini_batches} mini-batches, "
        f"{result.failed_mini_batches} failed)"
    )
    if result.status == "Completed":
        print(f"Completed: {counts}.")
    else:
        print(f"Failed: {result.reason}. {counts}.")
    if result.output_file:
        print(f"Output: {result.output_file}")
    print(f"Logs: {result.log_dir}/job_result.txt")
    return 0 if result.status == "Completed" else 1


def _run(args: argparse.Namespace, script_args: list[str]) -> int:
    settings = _settings(args, script_args)
    if args.rerun_failed:
        step = _rerun_step(args.rerun_failed, settings)
    else:
        step = _step_from_settings(settings)
    client = (
        _connect(settings["scheduler"], args) if settings.get("scheduler") else None
    )
    progress = None if args.no_progress else TextProgress()
    try:
        result = step.run(
            client=client,
            progress=progress,
            rerun_failed=bool(args.rerun_failed),
            wait_for_lock=bool(settings.get("wait_for_lock")),
        )
    finally:
        if client is not None:
            client.close()
    return _print_result(result)


def _remote(args: argparse.Namespace, script_args: list[str]) -> int:
    if args.command == "submit":
        settings = _settings(args, script_args)
        if not settings.get("scheduler"):
            raise UsageError(
                "submit needs --scheduler ADDRESS (or scheduler in the "
                "job file): the job runs on that cluster"
            )
        step = _step_from_settings(settings)
        client = _connect(settings["scheduler"], args)
    else:
        client = _connect(args.scheduler, args)
    try:
        if args.command == "submit":
            job_id = remote.submit_job(
                step, client, wait_for_lock=bool(settings.get("wait_for_lock"))
            )
            print(job_id)
            print(
                f"Follow it with: daskscore wait {job_id} --scheduler "
                f"{settings['scheduler']}",
                file=sys.stderr,
            )
            return 0
        if args.command == "status":
            return show_status(client, args.job_id, args.json, args.once)
        if args.command == "cancel":
            remote.cancel_job(client, args.job_id)
            print(f"{args.job_id}: cancel requested")
            return 0
        last = [""]

        def show(state: dict[str, Any]) -> None:
            line = remote.state_line(state)
            if line != last[0]:
                print(line, file=sys.stderr, flush=True)
                last[0] = line

        state = remote.wait_job(client, args.job_id, on_update=show)
        print(f"{state['status']}: {remote.state_line(state)}")
        if state.get("output_file"):
            print(f"Output: {state['output_file']}")
        return 0 if state["status"] == "Completed" else 1
    finally:
        client.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``daskscore`` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    script_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, script_args = argv[:cut], argv[cut + 1 :]
    # our own messages, one line each; other libraries' logs are not for users
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("daskscore: %(message)s"))
    ours = logging.getLogger("daskscore")
    ours.handlers[:] = [handler]
    ours.setLevel(logging.WARNING)
    ours.propagate = False
    # (azure-identity logs a failed sign-in as a 30-line warning; the error line
    # below says what failed and how to sign in)
    for name in ("distributed", "bokeh", "tornado", "azure"):
        logging.getLogger(name).setLevel(logging.ERROR)
    parser = _build_parser()
    previous = _catch_sigterm()
    try:
        if argv[:1] == ["run"] and len(argv) > 1 and is_v2_file(argv[1]):
            return run_v2(argv[1:], _connect)  # an Azure ML v2 job file
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        if args.command == "run":
            return _run(args, script_args)
        if args.command == "runs":
            return run_runs_command(args)
        return _remote(args, script_args)
    except DaskScoreError as exc:
        print(f"daskscore: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, _Terminated)
        print(
            "daskscore: "
            + ("terminated (SIGTERM)" if terminated else "interrupted")
            + "; committed mini-batches are kept, run the same command again to "
            "resume",
            file=sys.stderr,
        )
        return 143 if terminated else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def dask_cli() -> Any:
    """``dask score ...``: the ``daskscore`` commands as a dask CLI plugin."""
    import click

    @click.command(
        name="score",
        help="Batch scoring with daskscore (same as the daskscore command).",
        context_settings={
            "ignore_unknown_options": True,
            "allow_extra_args": True,
            "help_option_names": [],
        },
    )
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def score(args: tuple[str, ...]) -> None:
        sys.exit(main(list(args)))

    return score


score_command = dask_cli()


if __name__ == "__main__":
    sys.exit(main())
