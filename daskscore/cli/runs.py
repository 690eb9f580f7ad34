"""``daskscore runs list|show``: the run history of a workspace on the command line.

Wired into ``daskscore.cli``: :func:`add_runs_commands` adds the ``runs`` command
to its subparsers, :func:`run_runs_command` runs it and returns the exit code
(0; errors are raised as :class:`~daskscore.DaskScoreError` with exit code 2).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from ..errors import UsageError, WorkspaceError
from ..pipeline.pipeline import PipelineRun, list_runs
from ..registry.workspace import DEFAULT_WORKSPACE, Workspace

__all__ = ["add_runs_commands", "run_runs_command"]


def add_runs_commands(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``runs list`` and ``runs show RUN_ID`` to ``subparsers``."""
    runs = subparsers.add_parser(
        "runs", help="list and show pipeline runs of a workspace",
        description="The run history kept in a workspace. The workspace is "
                    "--workspace, else the one named by daskscore.json/config.json "
                    f"in this folder or a parent, else ./{DEFAULT_WORKSPACE}.",
    )
    sub = runs.add_subparsers(dest="runs_command")
    for name, helptext in (("list", "list runs, newest first"),
                           ("show", "show one run: status, times, steps, output")):
        cmd = sub.add_parser(name, help=helptext, description=helptext)
        if name == "show":
            cmd.add_argument("run_id", help="the run's id (see 'daskscore runs list')")
        else:
            cmd.add_argument("--experiment", help="only this experiment's runs")
            cmd.add_argument("--limit", type=int, default=20,
                             help="show at most this many runs (default 20; 0: all)")
        cmd.add_argument("--workspace", help="workspace folder or URL")
        cmd.add_argument("--json", action="store_true",
                         help="print JSON instead of text")
    return runs


def _workspace(path: str | None) -> Workspace:
    if path:
        return Workspace(path, create=False)
    try:
        return Workspace.from_config()
    except WorkspaceError:
        if os.path.isdir(DEFAULT_WORKSPACE):
            return Workspace(DEFAULT_WORKSPACE, create=False)
        raise


def _duration(details: dict[str, Any]) -> str:
    seconds = details.get("duration_seconds")
    return f"{seconds:.1f}s" if isinstance(seconds, int | float) else "-"


def run_runs_command(args: argparse.Namespace) -> int:
    """Run ``daskscore runs ...``; returns the exit code."""
    command = getattr(args, "runs_command", None)
    if command not in ("list", "show"):
        raise UsageError("say 'daskscore runs list' or 'daskscore runs show RUN_ID'")
    ws = _workspace(args.workspace)
    if command == "list":
        runs = list_runs(ws, args.experiment)
        if args.limit:
            runs = runs[: args.limit]
        rows = [run.get_details() for run in runs]
        if args.json:
            print(json.dumps(rows, indent=2, default=str))
            return 0
        if not rows:
            print(f"No runs in workspace {ws.url}")
            return 0
        header = ("RUN ID", "STATUS", "SUBMITTED (UTC)", "DURATION", "STEPS")
        table = [header] + [(
            d["run_id"], d["status"], str(d.get("submitted") or "-")[:19],
            _duration(d),
            ", ".join(f"{s['name']}:{s['status']}" + ("(reused)" if s.get("reused")
                                                      else "")
                      for s in d.get("steps", [])),
        ) for d in rows]
        widths = [max(len(r[i]) for r in table) for i in range(len(header) - 1)]
        for row in table:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
        return 0
    return _show(ws, args)


def _show(ws: Workspace, args: argparse.Namespace) -> int:
    run = PipelineRun.get(ws, args.run_id)
    details = run.get_details()
    histories = {s.name: s.history() for s in run.get_steps()}
    if args.json:
        for step in details.get("steps", []):
            step["runs"] = histories.get(step["name"], {})
        print(json.dumps(details, indent=2, default=str))
        return 0
    print(f"Run:         {details['run_id']}")
    print(f"Experiment:  {details['experiment']}")
    print(f"Status:      {details['status']}")
    print(f"Submitted:   {details.get('submitted')}")
    print(f"Started:     {details.get('started') or '-'}")
    print(f"Ended:       {details.get('ended') or '-'}  ({_duration(details)})")
    if details.get("tags"):
        print(f"Tags:        {details['tags']}")
    if details.get("error"):
        print(f"Error:       {details['error']}")
    for step in details.get("steps", []):
        reused = (f" (reused from {step.get('reused_from')})" if step.get("reused")
                  else "")
        print(f"Step {step['name']}: {step['status']}{reused}")
        if "succeeded_items" in step:
            print(f"  items: {step['succeeded_items']} succeeded, "
                  f"{step.get('failed_items', 0)} failed; mini-batches: "
                  f"{step.get('mini_batches')}; {step.get('elapsed_seconds')} s")
        if step.get("reason"):
            print(f"  reason: {step['reason']}")
        if step.get("output_file") or step.get("output_dir"):
            print(f"  output: {step.get('output_file') or step.get('output_dir')}")
        _print_history(histories.get(step["name"], {}))
    return 0


def _print_history(runs: dict[str, dict[str, Any]]) -> None:
    """What the step's script logged (Run.get_context()), run by run."""
    for run_id, run in runs.items():
        label = f" ({run['name']})" if run.get("name") else ""
        print(f"  run {run_id}{label}: {run['status']}")
        for name, value in run["metrics"].items():
            print(f"    metric {name}: {json.dumps(value, default=str)}")
        if run["tags"]:
            print(f"    tags: {json.dumps(run['tags'], default=str)}")
        for name in run["files"]:
            print(f"    file {name}")
