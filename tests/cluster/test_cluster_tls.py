"""A TLS-secured cluster (``dask scheduler/worker --tls-ca-file --tls-cert --tls-key``).

The certificates are made with ``cryptography`` (``certs.py``): one CA signs the
scheduler's and workers' certificate and a client certificate; a second CA signs a
stranger's. Refusals both ways are shown: a client that does not trust the
cluster's CA, and a scheduler that does not trust the client's certificate.
"""

from __future__ import annotations

from pathlib import Path

import dask
import pytest
from certs import issue, make_ca
from cluster_procs import (
    GATE_SCRIPT,
    cli,
    cluster_session,
    expected_gate_lines,
    make_files,
    write_script,
)

import daskscore as ds
from daskscore import _settings  # noqa: F401 - its defaults before dask.config.set
from daskscore.progress import ProgressCallback

pytest_plugins = ["cluster_procs"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    ca_key, ca_cert, ca_path = make_ca(folder, "daskscore-test-ca")
    other_key, other_cert, other_ca_path = make_ca(folder, "stranger-ca")
    certs = {
        "ca": ca_path,
        "node": issue(folder, "node", ca_key, ca_cert),
        "client": issue(folder, "client", ca_key, ca_cert),
        "stranger": issue(folder, "stranger", other_key, other_cert),
        "stranger_ca": other_ca_path,
    }
    with cluster_session(folder, {"nt": 1},
                         tls={"ca": ca_path, **certs["node"]}) as cluster:
        yield cluster, certs, folder


def _job_args(folder: Path, name: str) -> list[str]:
    src = write_script(folder / "src", GATE_SCRIPT)
    if not (folder / "in").exists():
        make_files(folder / "in", 4)
    return ["run", "--entry-script", str(src), "--input", str(folder / "in"),
            "--mini-batch-size", "2", "--no-progress", "--output", str(folder / name)]


def _one_error_line(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert lines[0].startswith("daskscore: error: "), lines[0]
    return lines[0]


def test_tls_cluster_address_is_tls(tls):
    cluster, _, _ = tls
    assert cluster.address.startswith("tls://")


def test_cli_runs_a_job_over_tls_with_certificates(tls):
    cluster, certs, folder = tls
    proc = cli(cluster.tracker, *_job_args(folder, "out-cli"),
               "--scheduler", cluster.address, "--tls-ca-file", certs["ca"],
               "--tls-cert", certs["client"]["cert"],
               "--tls-key", certs["client"]["key"])
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "Completed: 4 of 4 items succeeded" in proc.stdout
    lines = (folder / "out-cli" / "parallel_run_step.txt").read_text().splitlines()
    assert lines == expected_gate_lines(4)


def test_python_client_with_security_runs_a_job(tls):
    from distributed import Client
    from distributed.security import Security

    cluster, certs, folder = tls
    _job_args(folder, "unused")  # writes the script and the inputs
    security = Security(tls_ca_file=certs["ca"],
                        tls_client_cert=certs["client"]["cert"],
                        tls_client_key=certs["client"]["key"],
                        require_encryption=True)
    cfg = ds.ParallelRunConfig(entry_script=str(folder / "src" / "score.py"),
                               mini_batch_size="2")
    step = ds.ParallelRunStep(name="tls-job", parallel_run_config=cfg,
                              inputs=[ds.Dataset.File.from_files(str(folder / "in"))],
                              output=str(folder / "out-api"))
    with Client(cluster.address, security=security, timeout="30s") as client:
        result = step.run(client=client)
    assert result.status == "Completed", result.reason
    assert Path(result.output_file).read_text().splitlines() == expected_gate_lines(4)


def test_cli_without_a_certificate_is_refused_with_a_clear_error(tls):
    cluster, _, folder = tls
    proc = cli(cluster.tracker, *_job_args(folder, "out-none"),
               "--scheduler", cluster.address, timeout=120)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    line = _one_error_line(proc)
    assert cluster.address in line
    assert not (folder / "out-none" / ".daskscore" / "records").exists()


def test_cli_with_a_certificate_of_another_ca_is_refused(tls):
    cluster, certs, folder = tls
    proc = cli(cluster.tracker, *_job_args(folder, "out-stranger"),
               "--scheduler", cluster.address,
               "--tls-ca-file", certs["stranger_ca"],
               "--tls-cert", certs["stranger"]["cert"],
               "--tls-key", certs["stranger"]["key"], timeout=120)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    line = _one_error_line(proc)
    assert "cannot connect" in line and cluster.address in line
    assert not (folder / "out-stranger" / ".daskscore" / "records").exists()


def test_python_client_without_security_is_refused(tls):
    from distributed import Client

    cluster, _, _ = tls
    with pytest.raises((OSError, TypeError, TimeoutError)):
        # not a default client: a refused one stays registered as one
        Client(cluster.address, timeout="5s", set_as_default=False)


def test_the_scheduler_refuses_a_client_certificate_of_another_ca(tls):
    """The client trusts the cluster's CA (so it accepts the scheduler) but shows
    a certificate the cluster's CA did not sign: the scheduler refuses it."""
    cluster, certs, folder = tls
    proc = cli(cluster.tracker, *_job_args(folder, "out-untrusted"),
               "--scheduler", cluster.address,
               "--tls-ca-file", certs["ca"],
               "--tls-cert", certs["stranger"]["cert"],
               "--tls-key", certs["stranger"]["key"], timeout=120)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    line = _one_error_line(proc)
    assert "cannot connect" in line and cluster.address in line
    assert not (folder / "out-untrusted" / ".daskscore" / "records").exists()


def test_submit_status_and_wait_over_tls(tls):
    cluster, certs, folder = tls
    flags = ["--scheduler", cluster.address, "--tls-ca-file", certs["ca"],
             "--tls-cert", certs["client"]["cert"],
             "--tls-key", certs["client"]["key"]]
    # the job's flags, without "run" and --no-progress (submit shows none)
    args = [a for a in _job_args(folder, "out-submit")[1:] if a != "--no-progress"]
    submit = cli(cluster.tracker, "submit", *args, *flags)
    assert submit.returncode == 0, (submit.stdout, submit.stderr)
    job_id = submit.stdout.strip().splitlines()[0]
    status = cli(cluster.tracker, "status", job_id, *flags)
    assert status.returncode == 0, (status.stdout, status.stderr)
    assert status.stdout.startswith(f"{job_id}: "), status.stdout
    assert "/2 mini-batches" in status.stdout, status.stdout
    waited = cli(cluster.tracker, "wait", job_id, *flags, timeout=240)
    assert waited.returncode == 0, (waited.stdout, waited.stderr)
    assert waited.stdout.startswith("Completed: "), waited.stdout
    end = cli(cluster.tracker, "status", job_id, *flags)
    assert end.returncode == 0 and end.stdout.startswith(f"{job_id}: Completed, ")
    lines = (folder / "out-submit" / "parallel_run_step.txt").read_text().splitlines()
    assert lines == expected_gate_lines(4)
    # without the certificates, status cannot reach the cluster: one clear line
    refused = cli(cluster.tracker, "status", job_id, "--scheduler", cluster.address,
                  timeout=120)
    assert refused.returncode == 2, (refused.returncode, refused.stderr[-3000:])
    assert cluster.address in _one_error_line(refused)


LIVE_SCRIPT = """
import os, time

def init():
    pass

def run(mini_batch):
    names = [os.path.basename(p) for p in mini_batch]
    if names == ["item-0002.txt"]:  # waits until the client has counted 2
        for _ in range(1200):
            if os.path.exists(os.environ["GO_FILE"]):
                break
            time.sleep(0.1)
        else:
            open(os.environ["GAVE_UP_FILE"], "w").close()
    return names
"""


def test_live_progress_reaches_a_client_over_tls_before_the_pack_ends(tls):
    """The live records travel as Dask events over the cluster's own TLS comms:
    in one pack of 4, the client counts 2 while the 3rd mini-batch waits for it."""
    from distributed import Client
    from distributed.security import Security

    cluster, certs, folder = tls
    live = folder / "live"
    src = write_script(live / "src", LIVE_SCRIPT)
    make_files(live / "in", 4)
    go, gave_up = live / "go", live / "gave-up"
    seen: list[int] = []

    class Recorder(ProgressCallback):
        def update(self, progress):
            seen.append(progress.done_mini_batches)
            if progress.done_mini_batches >= 2 and not go.exists():
                go.write_text(str(progress.done_mini_batches))

    security = Security(tls_ca_file=certs["ca"],
                        tls_client_cert=certs["client"]["cert"],
                        tls_client_key=certs["client"]["key"],
                        require_encryption=True)
    cfg = ds.ParallelRunConfig(
        entry_script=str(src), mini_batch_size="1", node_count=1,
        process_count_per_node=1,
        environment_variables={"GO_FILE": str(go), "GAVE_UP_FILE": str(gave_up)})
    step = ds.ParallelRunStep(name="tls-live", parallel_run_config=cfg,
                              inputs=[ds.Dataset.File.from_files(str(live / "in"))],
                              output=str(live / "out"))
    packs = {"daskscore.pack.max-mini-batches": 4, "daskscore.pack.divisor": 1}
    with dask.config.set(packs), Client(cluster.address, security=security,
                                         timeout="30s") as client:
        result = step.run(client=client, progress=Recorder())

    assert result.status == "Completed", result.reason
    assert go.read_text() == "2" and not gave_up.exists()
    assert seen[-1] == 4
