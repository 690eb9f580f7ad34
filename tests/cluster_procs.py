"""Real ``dask scheduler`` / ``dask worker`` processes for the ``test_cluster_*`` tests.

Everything started here runs on 127.0.0.1 with free ports, and carries an
environment variable with a tag unique to its :class:`ProcessTracker`. Children
inherit it: the ``dask worker`` CLI's nannies and worker processes, and
daskscore's runner processes (``python -m daskscore.runner``), even after they
were re-parented because their worker was killed. ``ProcessTracker.stop_all``
stops everything carrying the tag by pid (SIGTERM, then SIGKILL after a few
seconds) and returns what is still running, which the fixtures assert is nothing.

Test modules load the fixtures with ``pytest_plugins = ["cluster_procs"]``.
``dask_cluster`` is one session-wide cluster of two nodes (``na``: 2 worker
processes, ``nb``: 1); tests that kill workers or need other settings start their
own with :func:`start_cluster` inside :func:`cluster_session`.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

import daskscore as ds

BIN = Path(sys.executable).parent
DASK = str(BIN / "dask")
DASKSCORE = str(BIN / "daskscore")
TAG_VAR = "DASKSCORE_TEST_PROCS"
STOP_GRACE_S = 6.0
START_TIMEOUT_S = 90.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout: float, what: str,
               interval: float = 0.2) -> Any:
    """Poll ``predicate`` until it returns something true; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def _live(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class ProcessTracker:
    """Starts processes with a tag in their environment and stops them by pid."""

    def __init__(self, log_dir: Path) -> None:
        self.tag = uuid.uuid4().hex
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.popens: list[subprocess.Popen] = []
        self.seen: set[int] = set()

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env[TAG_VAR] = self.tag
        env.update(extra or {})
        return env

    def popen(self, cmd: Sequence[str], log_name: str | None = None,
              env: dict[str, str] | None = None, cwd: str | None = None,
              capture: bool = False) -> subprocess.Popen:
        """Start ``cmd`` tagged; its output goes to a log file (or pipes)."""
        if capture:
            out = err = subprocess.PIPE
        else:
            name = log_name or f"proc-{len(self.popens)}.log"
            log = open(self.log_dir / name, "ab")
            out, err = log, subprocess.STDOUT
        try:
            proc = subprocess.Popen(list(cmd), env=self.env(env), cwd=cwd,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    text=capture)
        finally:
            if not capture:
                log.close()
        self.popens.append(proc)
        self.seen.add(proc.pid)
        return proc

    def run(self, cmd: Sequence[str], timeout: float, env: dict[str, str] | None = None,
            cwd: str | None = None) -> subprocess.CompletedProcess:
        """Run ``cmd`` to the end (bounded); its output is captured."""
        proc = self.popen(cmd, env=env, cwd=cwd, capture=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_tree(proc.pid)
            out, err = proc.communicate(timeout=10)
            raise AssertionError(
                f"{' '.join(cmd)} did not finish within {timeout:g} s\n"
                f"stdout: {out}\nstderr: {err}") from None
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    # -- finding and stopping ------------------------------------------------------
    def tagged(self) -> list[psutil.Process]:
        """Every live process carrying this tracker's tag (ours, and their children)."""
        found = []
        for proc in psutil.process_iter():
            try:
                if proc.environ().get(TAG_VAR) == self.tag and _live(proc):
                    found.append(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess,
                    OSError):
                continue
        self.seen.update(p.pid for p in found)
        return found

    def runner_pids(self) -> list[int]:
        """Live daskscore runner processes started under this tracker."""
        pids = []
        for proc in self.tagged():
            with contextlib.suppress(psutil.Error):
                if "daskscore.runner" in " ".join(proc.cmdline()):
                    pids.append(proc.pid)
        return pids

    def kill_tree(self, pid: int) -> None:
        """SIGKILL one process and its descendants."""
        try:
            root = psutil.Process(pid)
            procs = [*root.children(recursive=True), root]
        except psutil.NoSuchProcess:
            return
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()

    def stop(self, procs: Sequence[psutil.Process],
             grace: float = STOP_GRACE_S) -> None:
        """SIGTERM ``procs``, wait up to ``grace`` s, SIGKILL what is left."""
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGTERM)
        _, left = psutil.wait_procs(procs, timeout=grace)
        for proc in left:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(left, timeout=5)

    def stop_all(self, first: Sequence[subprocess.Popen] = ()) -> list[str]:
        """Stop ``first`` (e.g. the workers), then everything else; return survivors."""
        for group in (list(first), list(self.popens)):
            procs = []
            for popen in group:
                if popen.poll() is None:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        procs.append(psutil.Process(popen.pid))
            self.stop(procs)
        self.stop(self.tagged(), grace=3.0)  # orphans: runners, worker processes
        for popen in self.popens:
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(5)
        left = []
        for pid in sorted(self.seen):
            with contextlib.suppress(psutil.NoSuchProcess):
                proc = psutil.Process(pid)
                if _live(proc) and proc.environ().get(TAG_VAR) == self.tag:
                    left.append(f"{pid} {' '.join(proc.cmdline())}")
        for proc in self.tagged():
            entry = f"{proc.pid} {' '.join(proc.cmdline())}"
            if entry not in left:
                left.append(entry)
        return left


@dataclass
class DaskCluster:
    """A scheduler and worker nodes started from the ``dask`` command line."""

    tracker: ProcessTracker
    address: str
    dashboard: str  # host:port of the scheduler's dashboard
    scheduler: subprocess.Popen
    security_args: list[str] = field(default_factory=list)
    security: Any = None
    nodes: dict[str, subprocess.Popen] = field(default_factory=dict)
    node_workers: dict[str, int] = field(default_factory=dict)
    local_dir: Path | None = None

    @property
    def n_workers(self) -> int:
        return sum(self.node_workers.values())

    def add_node(self, node: str, nworkers: int) -> subprocess.Popen:
        """``dask worker ADDR --name NODE --nworkers N --nthreads 1``.

        With one worker process the name is ``NODE-0`` (``dask worker`` appends
        ``-i`` only when it starts several), so that daskscore sees the node.
        """
        name = node if nworkers > 1 else f"{node}-0"
        cmd = [DASK, "worker", self.address, "--name", name, "--nworkers",
               str(nworkers), "--nthreads", "1", "--host", "127.0.0.1",
               "--no-dashboard", "--memory-limit", "0", "--death-timeout", "60",
               "--local-directory", str(self.local_dir), *self.security_args]
        proc = self.tracker.popen(cmd, log_name=f"worker-{node}.log")
        self.nodes[node] = proc
        self.node_workers[node] = nworkers
        return proc

    def client(self, **kwargs: Any):
        """A Client of this cluster; never the default one (``get_client()``,
        ``.compute()``), which stays the session's ``shared_client``."""
        from distributed import Client

        kwargs.setdefault("set_as_default", False)
        if self.security is not None:
            kwargs.setdefault("security", self.security)
        return Client(self.address, timeout="30s", **kwargs)

    def wait_for_workers(self, n: int | None = None,
                         timeout: float = START_TIMEOUT_S) -> None:
        n = self.n_workers if n is None else n
        with self.client() as client:
            def enough() -> bool:
                workers = client.scheduler_info(n_workers=-1)["workers"]
                return len(workers) >= n
            wait_until(enough, timeout, f"{n} workers at {self.address}", 0.3)

    def worker_info(self, client) -> dict[str, dict[str, Any]]:
        return client.scheduler_info(n_workers=-1)["workers"]

    def url(self, path: str) -> str:
        return f"http://{self.dashboard}{path}"

    def stop(self) -> list[str]:
        return self.tracker.stop_all(first=list(self.nodes.values()))


def start_cluster(tracker: ProcessTracker, tmp: Path, nodes: dict[str, int],
                  tls: dict[str, str] | None = None,
                  wait: bool = True) -> DaskCluster:
    """Start ``dask scheduler`` and one ``dask worker`` per node (name -> processes).

    ``tls``: {"ca": ..., "cert": ..., "key": ...} PEM paths for the scheduler and
    the workers, and for this module's clients.
    """
    port, dash = free_port(), free_port()
    security_args: list[str] = []
    security = None
    protocol = "tcp"
    if tls:
        from distributed.security import Security

        protocol = "tls"
        security_args = ["--tls-ca-file", tls["ca"], "--tls-cert", tls["cert"],
                         "--tls-key", tls["key"]]
        security = Security(tls_ca_file=tls["ca"], tls_client_cert=tls["cert"],
                            tls_client_key=tls["key"], require_encryption=True)
    cmd = [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port),
           "--dashboard-address", f"127.0.0.1:{dash}", "--protocol", protocol,
           *security_args]
    scheduler = tracker.popen(cmd, log_name="scheduler.log")
    local_dir = Path(tmp) / "worker-space"
    local_dir.mkdir(parents=True, exist_ok=True)
    cluster = DaskCluster(tracker=tracker, address=f"{protocol}://127.0.0.1:{port}",
                          dashboard=f"127.0.0.1:{dash}", scheduler=scheduler,
                          security_args=security_args, security=security,
                          local_dir=local_dir)

    def listening() -> bool:
        if scheduler.poll() is not None:
            raise AssertionError("dask scheduler exited:\n" + (
                tracker.log_dir / "scheduler.log").read_text()[-3000:])
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0
    wait_until(listening, START_TIMEOUT_S, "the dask scheduler to listen")
    for node, count in nodes.items():
        cluster.add_node(node, count)
    if wait:
        cluster.wait_for_workers()
    return cluster


@contextlib.contextmanager
def cluster_session(tmp: Path, nodes: dict[str, int], tls: dict[str, str] | None = None
                    ) -> Iterator[DaskCluster]:
    """A cluster for one test (or module); every process it started is stopped."""
    tracker = ProcessTracker(Path(tmp) / "cluster-logs")
    cluster = None
    try:
        cluster = start_cluster(tracker, Path(tmp), nodes, tls=tls)
        yield cluster
    finally:
        left = cluster.stop() if cluster is not None else tracker.stop_all()
        assert not left, f"processes left running after the cluster stopped: {left}"


@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory) -> Iterator[DaskCluster]:
    """One shared cluster: node ``na`` (2 worker processes) and node ``nb`` (1)."""
    with cluster_session(tmp_path_factory.mktemp("dask-cluster"),
                         {"na": 2, "nb": 1}) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def cluster_client(dask_cluster):
    """A distributed.Client of the shared cluster (closed at the end)."""
    client = dask_cluster.client()
    yield client
    client.close()


# -- small helpers for the tests -----------------------------------------------------
def write_script(folder: Path, body: str, name: str = "score.py") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(body).lstrip())
    return path


def make_files(folder: Path, n: int, prefix: str = "item") -> list[Path]:
    """``n`` text files ``<prefix>-0000.txt`` ... holding their number."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{prefix}-{i:04d}.txt"
        path.write_text(f"{i}\n")
        paths.append(path)
    return paths


def read_report(output: Path) -> dict[str, Any]:
    return json.loads((Path(output) / "logs" / "job_report.json").read_text())


def records(output: Path) -> list[int]:
    """The ids of the mini-batches committed in an output folder, in order."""
    from daskscore.output.store import StateStore

    return sorted({i for i, _ in StateStore(str(output)).iter_records()})


def cli(tracker: ProcessTracker, *args: str, timeout: float = 180,
        env: dict[str, str] | None = None, dask: bool = False,
        cwd: str | None = None) -> subprocess.CompletedProcess:
    """``daskscore ARGS`` (or ``dask score ARGS``) as a subprocess, bounded."""
    cmd = [DASK, "score", *args] if dask else [DASKSCORE, *args]
    return tracker.run(cmd, timeout=timeout, env=env, cwd=cwd)


# A gate: once GATE_AFTER items were scored (by any worker; counted with token
# files in TOKEN_DIR), run() waits (bounded) for GATE_FILE to exist, so tests can
# hold a job in the middle without relying on timing or on the order Dask picks.
GATE_SCRIPT = '''
import os
import time

import daskscore as ds

GATE = os.environ.get("GATE_FILE", "")
GATE_AFTER = int(os.environ.get("GATE_AFTER", "-1"))
TOKENS = os.environ.get("TOKEN_DIR", "")
MARKERS = os.environ.get("MARKER_DIR", "")
SLEEP = float(os.environ.get("ITEM_SLEEP", "0"))
BURST = os.environ.get("BURST_FILE", "")


def init():
    if MARKERS:
        name = f"init-{os.getpid()}"
        with open(os.path.join(MARKERS, name), "w") as f:
            f.write(f"{os.getppid()} {ds.EntryScript().agent_name}")


def _wait_for_gate():
    if not GATE or GATE_AFTER < 0:
        return
    if len(os.listdir(TOKENS)) < GATE_AFTER or os.path.exists(GATE):
        return
    open(f"{GATE}.waiting-{os.getpid()}", "w").close()
    deadline = time.time() + 120
    while not os.path.exists(GATE) and time.time() < deadline:
        time.sleep(0.05)


def _wait_for_burst():
    """Optional: hold every first mini-batch until BURST_FILE exists, so that
    they all complete at once (a signal file <BURST_FILE>.waiting-<pid> says so)."""
    if not BURST or os.path.exists(BURST):
        return
    open(f"{BURST}.waiting-{os.getpid()}", "w").close()
    deadline = time.time() + 120
    while not os.path.exists(BURST) and time.time() < deadline:
        time.sleep(0.01)


def run(mini_batch):
    _wait_for_burst()
    out = []
    for path in mini_batch:
        _wait_for_gate()
        number = int(open(path).read())
        if SLEEP:
            time.sleep(SLEEP)
        out.append(f"{os.path.basename(path)} {number * 2}")
        if TOKENS:
            open(os.path.join(TOKENS, f"{number}-{os.getpid()}-{time.time_ns()}"),
                 "w").close()
    return out
'''


def gate_env(folder: Path, after: int) -> dict[str, str]:
    """Environment variables for GATE_SCRIPT: hold after ``after`` items."""
    tokens = Path(folder) / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    return {"GATE_FILE": str(Path(folder) / "gate-open"), "GATE_AFTER": str(after),
            "TOKEN_DIR": str(tokens)}


@dataclass
class GatedJob:
    """GATE_SCRIPT over ``n`` files in ``tmp``, held at the gate, with init markers.

    ``script`` (``tmp/src/score.py``), ``inputs`` (``tmp/in``), ``env`` (the
    gate's variables and ``MARKER_DIR``) and ``markers`` (one ``init-<runner
    pid>`` file per ``init()`` call, holding the pid of its worker).
    """

    script: Path
    inputs: Path
    env: dict[str, str]
    markers: Path

    @classmethod
    def make(cls, tmp: Path, n: int, gate_after: int) -> GatedJob:
        markers = Path(tmp) / "markers"
        markers.mkdir(parents=True)
        env = {**gate_env(tmp, gate_after), "MARKER_DIR": str(markers)}
        script = write_script(Path(tmp) / "src", GATE_SCRIPT)
        make_files(Path(tmp) / "in", n)
        return cls(script, Path(tmp) / "in", env, markers)

    def step(self, name: str, output: Path):
        """A step of this job: one file per mini-batch, 2 processes per node."""
        cfg = ds.ParallelRunConfig(entry_script=str(self.script), mini_batch_size="1",
                                   process_count_per_node=2,
                                   environment_variables=self.env)
        return ds.ParallelRunStep(name=name, parallel_run_config=cfg,
                                  inputs=[ds.Dataset.File.from_files(str(self.inputs))],
                                  output=str(output))

    def inits(self) -> dict[int, int]:
        """runner pid -> pid of the worker that started it, for every init() call."""
        return {int(p.name.split("-", 1)[1]): int(p.read_text().split()[0])
                for p in self.markers.iterdir() if p.name.startswith("init-")}


class StepThread(threading.Thread):
    """``step.run(client=client)`` in a daemon thread; ``result`` or ``error``."""

    def __init__(self, step, client) -> None:
        super().__init__(daemon=True)
        self.step, self.client = step, client
        self.result = self.error = None

    def run(self) -> None:
        try:
            self.result = self.step.run(client=self.client)
        except BaseException as exc:  # noqa: BLE001 - asserted by the tests
            self.error = exc


def open_gate(env: dict[str, str]) -> None:
    Path(env["GATE_FILE"]).write_text("open")


def waiting_at(signal_file: str) -> int:
    """How many runner processes are waiting for ``signal_file`` (gate or burst)."""
    folder, name = os.path.split(signal_file)
    return sum(1 for f in os.listdir(folder) if f.startswith(name + ".waiting-"))


def expected_gate_lines(n: int, prefix: str = "item") -> list[str]:
    return [f"{prefix}-{i:04d}.txt {i * 2}" for i in range(n)]
