"""``daskscore run pipeline.yml`` / ``daskscore run job.yml``: Azure ML v2 job files.

:func:`is_v2_file` tells a v2 file (``type: pipeline``, ``parallel`` or
``command``) from daskscore's own job file; :func:`run_v2` parses the flags and
runs it through :mod:`daskscore.v2jobs.pipeline`. Exit codes as for every
``daskscore run``: 0 Completed, 1 Failed, 2 a bad file or flag.
"""

from __future__ import annotations

import argparse
from typing import Any

import yaml

from ..errors import UsageError
from ..v2jobs.pipeline import run_job_file

__all__ = ["is_v2_file", "run_v2"]


def is_v2_file(path: str) -> bool:
    """Whether ``path`` is a ``.yml``/``.yaml`` file of an Azure ML v2 job."""
    if not path.lower().endswith((".yml", ".yaml")):
        return False
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and (
        data.get("type") in ("pipeline", "parallel", "command")
        or "azureml" in str(data.get("$schema", "")))


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit code 2
        raise UsageError(f"{message} (see 'daskscore run FILE.yml --help')")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="daskscore run", description=(
        "Run an Azure ML v2 pipeline, parallel or command job file as it is, on an "
        "embedded cluster or the Dask cluster at --scheduler."))
    parser.add_argument("job_file", help="the v2 YAML file (type: pipeline|parallel|"
                        "command)")
    parser.add_argument("--scheduler", help="address of a Dask scheduler (default: "
                        "an embedded cluster)")
    parser.add_argument("--workspace", default=".daskscore", help="the daskscore "
                        "workspace whose datastores azureml://datastores/... paths "
                        "resolve to, and whose run history records the run "
                        "(default ./.daskscore)")
    parser.add_argument("--output-root", help="where outputs without a path go "
                        "(default ./azureml-outputs/<job name>/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="jobs.JOB.inputs.NAME=VALUE",
                        help="override an input (repeatable)")
    parser.add_argument("--no-progress", action="store_true",
                        help="do not show the progress bars")
    for flag in ("--tls-ca-file", "--tls-cert", "--tls-key"):
        parser.add_argument(flag, default=None, help="TLS file of the cluster")
    return parser


def run_v2(argv: list[str], connect: Any) -> int:
    """Run ``daskscore run FILE.yml [flags]``; ``connect(address, args)`` gives a
    client. Returns the exit code."""
    args = _parser().parse_args(argv)
    client = connect(args.scheduler, args) if args.scheduler else None
    try:
        result = run_job_file(args.job_file, overrides=args.overrides,
                              workspace=args.workspace, output_root=args.output_root,
                              client=client, progress=not args.no_progress)
    finally:
        if client is not None:
            client.close()
    if result.status == "Completed":
        return 0
    # 2 when a job could not start for a usage, configuration or entry-script
    # error (as for any daskscore run), else 1
    codes = [d.get("exit_code") for d in result.jobs.values()]
    return 2 if 2 in codes else 1
