"""Shared pytest fixtures."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from azurite import AzureContainer, Azurite, start_azurite


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
