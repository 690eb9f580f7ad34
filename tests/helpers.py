"""Shared fixtures and helpers of the end-to-end ``test_step_*`` tests.

Everything here is real: a multi-process Dask cluster, files in ``tmp_path`` and
entry scripts written by the tests. Test modules load the fixtures with
``pytest_plugins = ["helpers"]`` (so one cluster serves the whole session) and
import the helpers with ``from helpers import ...``; ``tests/`` has no
``__init__.py``, so pytest's rootdir-based import puts it on ``sys.path``.

PYTEST_DONT_REWRITE: this module is imported before pytest registers it as a
plugin, and it holds no asserts to rewrite.
"""

from __future__ import annotations

import csv
import json
import textwrap
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import distributed
import psutil
import pytest

import daskscore as ds
from daskscore.engine.cluster import start_embedded_cluster

N_WORKERS = 2
STEP_NAME = "test-step"

# processed_mini-batches.csv, as docs/engine-contract.md lists it
TRIES_COLUMNS = [
    "mini_batch_id", "try", "worker", "items", "succeeded", "failed",
    "elapsed_seconds", "run_seconds", "read_seconds", "peak_rss_mib", "status",
    "error", "input",
]
# job_report.json, as docs/engine-contract.md lists it
REPORT_KEYS = {
    "status", "step", "reason", "total_items", "succeeded_items", "failed_items",
    "mini_batches", "processed_mini_batches", "failed_mini_batches", "tries",
    "elapsed_seconds", "items_per_second", "resumed_mini_batches", "output_dir",
    "output_file", "output_action", "warnings",
}


@pytest.fixture(scope="session")
def shared_client():
    """One embedded cluster (2 single-threaded worker processes) for the session.

    Every job registers its own uniquely named plugin (and so its own runner
    processes), so jobs of different tests do not share script state.
    """
    cluster = start_embedded_cluster(N_WORKERS, None)
    client = distributed.Client(cluster)
    client.wait_for_workers(N_WORKERS, timeout=120)
    yield client
    client.close()
    cluster.close()


# -- inputs and scripts ------------------------------------------------------------
def write_script(folder: Path, body: str, name: str = "score.py",
                 prelude: bool = False) -> Path:
    """Write an entry script (dedented) into ``folder`` and return its path.

    With ``prelude`` the script starts with :data:`MARKER_PRELUDE` (``mark()``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    text = textwrap.dedent(body).lstrip()
    path.write_text((MARKER_PRELUDE.lstrip() + "\n\n" if prelude else "") + text)
    return path


def make_files(folder: Path, n: int,
               content: Callable[[int], str] = lambda i: f"{i}\n",
               prefix: str = "item") -> list[Path]:
    """``n`` small text files ``<prefix>-0000.txt`` ... with ``content(i)``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{prefix}-{i:04d}.txt"
        path.write_text(content(i))
        paths.append(path)
    return paths


def file_names(n: int, prefix: str = "item") -> list[str]:
    """The base names ``make_files`` gives, in input order."""
    return [f"{prefix}-{i:04d}.txt" for i in range(n)]


def make_step(script: Path, inputs: Any, output: Path | None, *,
              arguments: Sequence[str] | None = None, name: str = STEP_NAME,
              **config: Any) -> ds.ParallelRunStep:
    """A step over ``inputs`` (a dataset or a list of them) with ``config``."""
    if isinstance(inputs, ds.FileDataset | ds.TabularDataset):
        inputs = [inputs]
    cfg = ds.ParallelRunConfig(entry_script=str(script), **config)
    return ds.ParallelRunStep(name=name, parallel_run_config=cfg, inputs=inputs,
                              output=None if output is None else str(output),
                              arguments=arguments)


# -- reading what a job left --------------------------------------------------------
def counts(result: ds.StepRunResult) -> tuple[int, int, int]:
    """(total, succeeded, failed) items of a result."""
    return result.total_items, result.succeeded_items, result.failed_items


def read_tries(output: Path) -> list[dict[str, str]]:
    """The rows of ``logs/processed_mini-batches.csv`` (one per try)."""
    with open(output / "logs" / "processed_mini-batches.csv", newline="") as f:
        return list(csv.DictReader(f))


def tries_header(output: Path) -> list[str]:
    with open(output / "logs" / "processed_mini-batches.csv", newline="") as f:
        return next(csv.reader(f))


def tries_by_mini_batch(output: Path) -> dict[int, list[dict[str, str]]]:
    """Tries of each mini-batch id, in try order."""
    out: dict[int, list[dict[str, str]]] = {}
    for row in read_tries(output):
        out.setdefault(int(row["mini_batch_id"]), []).append(row)
    for rows in out.values():
        rows.sort(key=lambda r: int(r["try"]))
    return out


def read_report(output: Path) -> dict[str, Any]:
    return json.loads((output / "logs" / "job_report.json").read_text())


def read_lines(path: Path | str) -> list[str]:
    """Lines of a text file without their line ends."""
    return Path(path).read_text().splitlines()


def records_committed(output: Path) -> dict[int, dict[str, Any]]:
    """The committed per-mini-batch records of an output folder, by id (read as
    a resume reads them: pack logs, or a file each on blob storage)."""
    from daskscore.output.store import StateStore

    return dict(sorted(StateStore(str(output)).iter_records()))


# -- processes ------------------------------------------------------------------------
def markers(folder: Path, prefix: str) -> list[str]:
    """The suffixes of marker files ``<prefix>-<suffix>`` in ``folder``."""
    if not folder.is_dir():
        return []
    return sorted(p.name[len(prefix) + 1:] for p in folder.iterdir()
                  if p.name.startswith(prefix + "-"))


def alive(pids: Iterable[int]) -> list[int]:
    """The pids that still belong to a running (not zombie) process."""
    running = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                running.append(pid)
        except psutil.NoSuchProcess:
            pass
    return running


# An entry-script prelude: marker files named after the process, in a folder given
# by the MARKER_DIR environment variable (set through environment_variables).
MARKER_PRELUDE = """
import os

MARKER_DIR = os.environ["MARKER_DIR"]


def mark(kind, suffix=""):
    name = f"{kind}-{os.getpid()}" + (f"-{suffix}" if suffix else "")
    with open(os.path.join(MARKER_DIR, name), "w") as f:
        f.write(str(os.getppid()))
"""


# -- holding a job until it has stopped ----------------------------------------------
# Entry-script code: every mini-batch but the failing ones waits at a gate (the
# file STOP_GATE) and leaves <STOP_GATE>.waiting-<first input name> while it
# waits; past the gate it leaves <RUN_DIR>/run-<first input name>-<random>.
STOP_GATE_PRELUDE = """
import os
import time

STOP_GATE = os.environ["STOP_GATE"]
RUN_DIR = os.environ["RUN_DIR"]


def hold(names):
    open(f"{STOP_GATE}.waiting-{names[0]}", "w").close()
    deadline = time.time() + 600  # only so that a broken test ends its processes
    while not os.path.exists(STOP_GATE) and time.time() < deadline:
        time.sleep(0.01)
    open(os.path.join(RUN_DIR, f"run-{names[0]}-{os.urandom(4).hex()}"), "w").close()
"""


class StopGate:
    """Opens ``STOP_GATE`` once the job writing to ``output`` stopped starting work.

    A background thread asks every worker for the job's plugins; once each one
    it found is cancelled or gone (no worker starts another mini-batch of the
    job), it
    counts the mini-batches waiting at the gate (:attr:`in_flight`) and opens it
    (a job that is over before the thread sees it stop: when the block ends).
    What the job then scores is what was in flight, and nothing more. A job that
    never stops keeps its mini-batches at the gate until pytest's timeout.
    """

    def __init__(self, client: Any, output: Path, folder: Path) -> None:
        self.client = client
        self.output_url = str(output)
        self.gate = Path(folder) / "stop-gate"
        self.runs = Path(folder) / "runs"
        self.runs.mkdir(parents=True, exist_ok=True)
        self.in_flight: list[str] | None = None
        self.error: Exception | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    @property
    def env(self) -> dict[str, str]:
        """``environment_variables`` for a script with :data:`STOP_GATE_PRELUDE`."""
        return {"STOP_GATE": str(self.gate), "RUN_DIR": str(self.runs)}

    def waiting(self) -> list[str]:
        prefix = self.gate.name + ".waiting-"
        return sorted(p.name[len(prefix):] for p in self.gate.parent.iterdir()
                      if p.name.startswith(prefix))

    def scored(self) -> list[str]:
        """First input names of the mini-batches that passed the gate."""
        return sorted(p.name[4:].rsplit("-", 1)[0] for p in self.runs.iterdir())

    def _started(self) -> set[int]:
        """Mini-batches a worker started (a start mark) and not recorded."""
        from daskscore.output.store import StateStore

        interrupted: dict[int, dict] = {}
        for _ in StateStore(self.output_url).iter_records(interrupted=interrupted):
            pass
        return set(interrupted)

    def _watch(self) -> None:
        def job_cancelled(output_url: str, dask_worker=None) -> list[bool]:
            # on a worker (a local function: pickled by value): the ``cancelled``
            # flag of each plugin of the job writing to output_url
            return [
                bool(getattr(p, "cancelled", False))
                for p in dask_worker.plugins.values()
                if getattr(getattr(p, "job", None), "output_url", None) == output_url
            ]

        try:
            seen = False
            while not self._stop.is_set():
                flags = self.client.run(job_cancelled, self.output_url)
                found = [f for fs in flags.values() for f in fs]
                # cancelled everywhere, or already removed (a job that stops
                # unregisters its plugin at once: no task of it can start then)
                if (found and all(found)) or (seen and not found):
                    break
                seen = seen or bool(found)
                self._stop.wait(0.05)
            # a mini-batch started just before the stop reaches the gate: count it
            while not self._stop.is_set() and len(self.waiting()) < len(
                    self._started()):
                self._stop.wait(0.01)
            if not self._stop.is_set():
                self.in_flight = self.waiting()
        except Exception as exc:  # noqa: BLE001 - shown by the test's asserts
            self.error = exc
        finally:
            self.gate.write_text("open")

    def __enter__(self) -> StopGate:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        if self.in_flight is None:  # the job ended before the watch saw it stop
            self.in_flight = self.waiting()
        self.gate.write_text("open")
        if self.error is not None and exc_info[0] is None:
            raise AssertionError(f"the stop gate failed: {self.error!r}")
