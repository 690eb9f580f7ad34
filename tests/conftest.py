"""Shared pytest fixtures."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator

import pytest
from azurite import AzureContainer, Azurite, start_azurite

# Started in the background by a shell without job control (`make test &`,
# `nohup ...`), this process has SIGINT ignored, and so would every command a
# test starts: Python then never raises KeyboardInterrupt, and the tests that
# press Ctrl-C on a command would wait for it forever. A handler of our own is
# reset to the default in the children.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


# -- default distributed.Client: at most one, and none left behind by a test -----
def _open_default_clients() -> list:
    """The ``distributed.Client`` objects that ``get_client()`` may pick, open."""
    from distributed.client import _global_clients

    return [c for c in list(_global_clients.values()) if c.status != "closed"]


_REPORTED: set[int] = set()


@pytest.fixture(autouse=True)
def no_leaked_default_client() -> Iterator[None]:
    """Fail a test that leaves a default ``distributed.Client`` open.

    ``ds.map_partitions``, ``.compute()`` and ``step.run()`` without ``client=``
    use the newest open default client: one that a test (or a fixture) leaves
    behind makes later tests score on the wrong cluster. A client a test or
    fixture keeps must be made with ``set_as_default=False`` (as
    ``DaskCluster.client()`` does); only the session's ``shared_client`` is a
    default.
    """
    before = {id(c) for c in _open_default_clients()}
    yield
    after = _open_default_clients()
    leaked = [c for c in after if id(c) not in before]
    # a fixture's client is there before the test starts: the first test that
    # sees two defaults fails, once for each of them
    offenders = {id(c) for c in [*leaked, *(after if len(after) > 1 else [])]}
    if offenders - _REPORTED:
        _REPORTED.update(offenders)
        shown = ", ".join(
            f"{'new ' if c in leaked else ''}Client({c.scheduler.address})"
            for c in after
        )
        pytest.fail(
            f"open default distributed.Client objects after this test: {shown}; "
            "close the clients a test makes, and make those a fixture keeps with "
            "set_as_default=False",
            pytrace=False,
        )


# -- Azure Blob Storage: a real Azurite emulator, one per test session ----------
@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """A running ``azurite-blob`` on a free 127.0.0.1 port, stopped at the end."""
    emulator = start_azurite()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def azure_container(azurite: Azurite) -> Iterator[AzureContainer]:
    """A fresh, empty container on the session's Azurite, deleted afterwards."""
    name = f"t{uuid.uuid4().hex[:20]}"
    client = azurite.service_client()
    client.create_container(name)
    try:
        yield AzureContainer(name=name, azurite=azurite)
    finally:
        if azurite.alive():
            client.delete_container(name)
        client.close()
