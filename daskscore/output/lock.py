"""One writer per output folder: the lease file ``.daskscore/lock.json``.

A job takes the lock of its output folder before it reads what earlier runs
left there (resume) and gives it back when it ends, also when it fails or is
interrupted. The file says who holds it: the job id, the step, the host, the
process id (and its start time) and a heartbeat the job refreshes while it runs.

A second job into the same folder refuses with one line naming the running job
(:class:`~daskscore.errors.JobError`), or waits for it (``wait=True``). A lock
whose owner is gone is taken over with a warning line: its process died (same
host: the pid is gone or is another process now), or its heartbeat is older
than ``daskscore.lock.stale-after`` (another host, or a hung owner).

Taking the lock is atomic: on the local disk ``os.open(O_CREAT | O_EXCL)``, on
Azure Blob Storage an upload that fails if the blob exists (``overwrite=False``).
A stale lock is removed only if it is still the one judged stale (an ETag
condition on blob storage; locally, compared and removed under a guard file),
so of several jobs taking over the same stale lock exactly one wins. Other
fsspec filesystems get the same protocol without the atomic create (best effort).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psutil
from fsspec.asyn import sync

from ..errors import JobError
from ..storage import describe_storage_error
from .store import StateStore, join, remove_quietly, temp_name

__all__ = ["LOCK_FILE", "LockSettings", "OutputLock"]

logger = logging.getLogger("daskscore")

LOCK_FILE = "lock.json"
# the tokens of the locks this process holds now: a lock file of this process
# with another token was left by one of its jobs that could not remove it (its
# storage was unreachable at the end) and is stale
_HELD_TOKENS: set[str] = set()
# seconds after which a guard file (see _LocalLease) left by a dead process goes
GUARD_STALE_AFTER = 30.0


@dataclass(frozen=True)
class LockSettings:
    """``daskscore.lock.*``: when a lock is stale, how often it is refreshed/polled."""

    stale_after: float = 120.0
    heartbeat_interval: float = 10.0
    poll_interval: float = 1.0


@dataclass
class _Found:
    """A lock file as read: its bytes, its version (for conditions), its age."""

    data: bytes
    version: Any
    modified: float


class OutputLock:
    """The lock of one output folder, held by one job."""

    def __init__(
        self,
        store: StateStore,
        job_id: str,
        step_name: str,
        settings: LockSettings | None = None,
    ) -> None:
        self.store = store
        self.job_id = job_id
        self.step_name = step_name
        self.settings = settings or LockSettings()
        self.path = join(store.state, LOCK_FILE)
        self.lease = _lease_for(store, self.path)
        self.token = uuid.uuid4().hex
        self.held = False
        self.lost = False
        self._version: Any = None
        self._started = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the file --------------------------------------------------------------
    def content(self) -> bytes:
        """What this job writes into the lock file (with a fresh heartbeat)."""
        return json.dumps(
            {
                "job_id": self.job_id,
                "step": self.step_name,
                "owner": _owner(),
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "pid_started": _process_started(os.getpid()),
                "started_at": self._started,
                "heartbeat": time.time(),
                "token": self.token,
            },
            indent=2,
        ).encode()

    # -- taking and giving back --------------------------------------------------
    def acquire(self, wait: bool = False) -> None:
        """Take the lock; refuse (JobError) or wait while a live job holds it."""
        announced = False
        while True:
            holder = self._try_take()
            if holder is None:
                self.held = True
                _HELD_TOKENS.add(self.token)
                self._start_heartbeat()
                return
            if not wait:
                raise JobError(self._refusal(holder))
            if not announced:
                logger.warning(
                    "%s is in use by %s; waiting for it to end (--wait-for-lock)",
                    self.store.output_url,
                    _describe(holder),
                )
                announced = True
            time.sleep(self.settings.poll_interval)

    def _try_take(self) -> dict[str, Any] | None:
        """Take the lock now if free or stale; else the holder's info."""
        info: dict[str, Any] | None = None
        stale: tuple[dict[str, Any], str] | None = None
        for _ in range(5):  # a lock released or replaced between two steps
            version = self.lease.create(self.content())
            if version is not None:
                self._version = version
                if stale is not None:
                    logger.warning(
                        "took over the lock of %s from %s: %s",
                        self.store.output_url,
                        _describe(stale[0]),
                        stale[1],
                    )
                return None
            found = self.lease.read()
            if found is None:
                continue  # released meanwhile
            info = _parse(found.data)
            why = self._stale(info, found.modified)
            if why is None:
                return info or {}
            if self.lease.delete(found.version):
                stale = (info or {}, why)
        return info or {}

    def _stale(self, info: dict[str, Any] | None, modified: float) -> str | None:
        """Why the lock's owner is gone, or None while it may be alive."""
        limit = self.settings.stale_after
        now = time.time()
        if info is None:  # half written (being created) or not a lock at all
            age = now - modified
            if age > limit:
                return f"the lock file is unreadable and {age:.0f} s old"
            return None
        if info.get("job_id") == self.job_id and info.get("token") != self.token:
            # this same job, run again (a detached job whose worker died)
            return "it was taken by an earlier execution of this same job"
        pid = info.get("pid")
        here = info.get("host") == socket.gethostname()
        if here and pid == os.getpid() and info.get("token") not in _HELD_TOKENS:
            return "an earlier job of this process could not remove it"
        if here and not _alive(pid, info.get("pid_started")):
            return f"its process {pid} on {info.get('host')} is gone"
        age = now - float(info.get("heartbeat") or 0)
        if age > limit:
            return (
                f"its last heartbeat is {age:.0f} s old "
                f"(daskscore.lock.stale-after is {limit:g} s)"
            )
        return None

    def _refusal(self, holder: dict[str, Any]) -> str:
        return (
            f"the output folder {self.store.output_url} is in use by "
            f"{_describe(holder)}; wait for it to end, use another output folder, "
            "or run with --wait-for-lock (Python: wait_for_lock=True) to wait. A "
            "lock whose job died is taken over (its process gone, or no heartbeat "
            f"for daskscore.lock.stale-after, {self.settings.stale_after:g} s)"
        )

    def release(self) -> None:
        """Give the lock back (only if this job still holds it)."""
        self._stop.set()
        if self._thread is not None:
            # a refresh stuck on unreachable storage is not waited for: its
            # condition (the version) fails once the lock is gone
            self._thread.join(timeout=max(1.0, self.settings.heartbeat_interval))
            self._thread = None
        if self.held and not self.lost:
            try:
                self.lease.delete(self._version)
            except Exception as exc:  # noqa: BLE001 - storage gone: it goes stale
                # info, not a warning: the job's own error already names the
                # storage, and a later run takes the lock over by itself
                logger.info(
                    "could not remove the lock of %s; a later run takes it over "
                    "once it is stale",
                    describe_storage_error(
                        exc, self.store.output_url, self.store.storage_options
                    ),
                )
        _HELD_TOKENS.discard(self.token)
        self.held = False

    # -- heartbeat ---------------------------------------------------------------
    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._beat, name=f"daskscore-lock-{self.job_id}", daemon=True
        )
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_interval):
            self.refresh()

    def refresh(self) -> bool:
        """Write a fresh heartbeat; False (and a warning) if the lock was lost."""
        if self.lost:
            return False
        try:
            version = self.lease.replace(self.content(), self._version)
        except Exception as exc:  # noqa: BLE001 - a storage hiccup: next beat
            logger.debug("cannot refresh the lock %s: %s", self.path, exc)
            return True
        if version is None:
            self.lost = True
            logger.warning(
                "job %s lost the lock of %s: another job took it over (was this "
                "job's heartbeat stopped for longer than daskscore.lock.stale-after?)",
                self.job_id,
                self.store.output_url,
            )
            return False
        self._version = version
        return True


# -- who holds it ------------------------------------------------------------------
def _owner() -> str:
    try:
        return os.getlogin()
    except OSError:
        return str(os.getuid()) if hasattr(os, "getuid") else ""


def _process_started(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None


def _alive(pid: Any, started: Any) -> bool:
    """Whether process ``pid`` (started at ``started``) still runs on this host."""
    try:
        process = psutil.Process(int(pid))
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        if started is not None and abs(process.create_time() - float(started)) > 1:
            return False  # the pid was reused by another process
        return True
    except psutil.AccessDenied:
        return True
    except (psutil.Error, TypeError, ValueError):
        return False


def _parse(data: bytes) -> dict[str, Any] | None:
    try:
        info = json.loads(data)
    except ValueError:
        return None
    return info if isinstance(info, dict) and info.get("job_id") else None


def _describe(info: dict[str, Any]) -> str:
    if not info:
        return "another job (its lock file is being written)"
    beat = info.get("heartbeat")
    age = f", last heartbeat {time.time() - float(beat):.0f} s ago" if beat else ""
    return (
        f"job {info.get('job_id')} (step {info.get('step')}, pid {info.get('pid')} "
        f"on {info.get('host')}{age})"
    )


# -- where the file lives ------------------------------------------------------------
def _lease_for(store: StateStore, path: str) -> Any:
    if store.local:
        return _LocalLease(path)
    if type(store.fs).__module__.split(".", 1)[0] == "adlfs":
        return _BlobLease(store.fs, path)
    return _FsLease(store.fs, path)


class _LocalLease:
    """The lock file on the local disk: created with ``O_EXCL``.

    Changing or removing it (a heartbeat, a release, a takeover) reads, compares
    and writes under a short-lived guard file (``lock.json.guard``, also taken
    with ``O_EXCL``), so that a check and its change are one step for every
    other job. A guard left by a process that died is removed after
    :data:`GUARD_STALE_AFTER` seconds.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.guard = f"{path}.guard"

    def create(self, data: bytes) -> Any:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return None
        try:
            os.write(fd, data)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            remove_quietly(self.path)
            raise
        os.close(fd)
        return data

    def read(self) -> _Found | None:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
                return _Found(data, data, os.fstat(f.fileno()).st_mtime)
        except FileNotFoundError:
            return None

    @contextlib.contextmanager
    def _guarded(self) -> Iterator[None]:
        while True:
            try:
                os.close(os.open(self.guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                break
            except FileExistsError:
                try:
                    if time.time() - os.stat(self.guard).st_mtime > GUARD_STALE_AFTER:
                        remove_quietly(self.guard)
                except FileNotFoundError:
                    pass
                time.sleep(0.005)
        try:
            yield
        finally:
            remove_quietly(self.guard)

    def replace(self, data: bytes, version: Any) -> Any:
        """Write ``data`` if the file still holds ``version``; its new version."""
        with self._guarded():
            found = self.read()
            if found is None or found.data != version:
                return None
            tmp = os.path.join(os.path.dirname(self.path), temp_name(LOCK_FILE))
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, self.path)
            except BaseException:
                remove_quietly(tmp)
                raise
            return data

    def delete(self, version: Any) -> bool:
        """Remove the file if it still holds ``version``."""
        with self._guarded():
            found = self.read()
            if found is None or (version is not None and found.data != version):
                return False
            os.unlink(self.path)
            return True


class _BlobLease:
    """The lock blob on Azure Blob Storage: created and changed under ETag rules."""

    def __init__(self, fs: Any, path: str) -> None:
        self.fs = fs
        self.path = path

    def _client(self):
        container, blob, _ = self.fs.split_path(self.path)
        return self.fs.service_client.get_blob_client(container=container, blob=blob)

    def _run(self, coro_fn, *args):
        return sync(self.fs.loop, coro_fn, *args)

    def create(self, data: bytes) -> Any:
        try:
            result = self.fs.pipe_file(self.path, data, overwrite=False)
        except FileExistsError:
            return None
        return (result or {}).get("etag")

    def read(self) -> _Found | None:
        return self._run(self._read)

    async def _read(self) -> _Found | None:
        from azure.core.exceptions import ResourceNotFoundError

        async with self._client() as bc:
            try:
                stream = await bc.download_blob()
            except ResourceNotFoundError:
                return None
            data = await stream.readall()
            props = stream.properties
            modified = props.last_modified.timestamp() if props.last_modified else 0
            return _Found(data, props.etag, modified)

    def replace(self, data: bytes, version: Any) -> Any:
        return self._run(self._replace, data, version)

    async def _replace(self, data: bytes, version: Any) -> Any:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

        async with self._client() as bc:
            try:
                result = await bc.upload_blob(
                    data,
                    overwrite=True,
                    etag=version,
                    match_condition=MatchConditions.IfNotModified,
                )
            except (ResourceModifiedError, ResourceNotFoundError):
                return None
            return result.get("etag")

    def delete(self, version: Any) -> bool:
        return self._run(self._delete, version)

    async def _delete(self, version: Any) -> bool:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

        async with self._client() as bc:
            try:
                if version is None:
                    await bc.delete_blob()
                else:
                    await bc.delete_blob(
                        etag=version, match_condition=MatchConditions.IfNotModified
                    )
            except (ResourceModifiedError, ResourceNotFoundError):
                return False
        return True


class _FsLease:
    """Any other fsspec filesystem: the same steps, without atomic creation."""

    def __init__(self, fs: Any, path: str) -> None:
        self.fs = fs
        self.path = path

    def create(self, data: bytes) -> Any:
        if self.fs.exists(self.path):
            return None
        self.fs.pipe_file(self.path, data)
        return data

    def read(self) -> _Found | None:
        try:
            data = self.fs.cat_file(self.path)
        except FileNotFoundError:
            return None
        try:
            modified = self.fs.modified(self.path).timestamp()
        except (NotImplementedError, OSError, AttributeError, ValueError):
            modified = time.time()
        return _Found(data, data, modified)

    def replace(self, data: bytes, version: Any) -> Any:
        found = self.read()
        if found is None or found.data != version:
            return None
        self.fs.pipe_file(self.path, data)
        return data

    def delete(self, version: Any) -> bool:
        found = self.read()
        if found is None or (version is not None and found.data != version):
            return False
        self.fs.rm_file(self.path)
        return True
