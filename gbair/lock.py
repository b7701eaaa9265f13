"""One writer per workdir: WORKDIR/gbair.lock, taken before a job writes anything, released on exit.

Two processes writing one workdir (the same command started twice, a retried job) would write the
same checkpoints, state files and results.csv at once. The lock file names its holder (host, pid,
start time) so that a second process stops at once with one line saying who holds it.

- Local and network disks: an OS lock (`fcntl.flock`) on the file. The OS drops it when the holder
  dies however it dies (an NFS server once the client's lease ends), so a lock file left by a killed
  process is taken over, with a warning naming it.
- Object stores (gs://): an object created only if absent (a generation precondition), with a
  lease the holder renews every LEASE_S / 4; a later run breaks a lease not renewed for LEASE_S and
  says so. Needs google-cloud-storage; without it (or on another store) the run goes on unlocked,
  with a warning.
- Several hosts: process 0 holds the lock for all (gbair.hosts); the others learn its outcome.
- Re-entrant within a process: gbair.main takes it, and the jobs inside take it again for library
  callers.
"""

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import threading
import time
from typing import Any, Callable, Iterator, Protocol

from absl import logging

from gbair import UserError, files, hosts

LOCK_FILE = "gbair.lock"
LEASE_S = 600.0  # an object-store lock not renewed for this long belongs to a dead process
_held: dict[str, int] = {}  # lock location -> nesting depth, in this process
_STARTED = datetime.datetime.now().isoformat(timespec="seconds")  # when this process started


def holder_info() -> dict[str, Any]:
    """What the lock file says about its holder."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": _STARTED}


def describe(info: dict[str, Any] | None) -> str:
    if not info:
        return "a process whose details are not (yet) written"
    return f"pid {info.get('pid')} on host {info.get('host')} (started {info.get('started')})"


@contextlib.contextmanager
def hold(workdir: files.Location) -> Iterator[None]:
    """Holds WORKDIR's lock for the `with` block; UserError (one line, naming the holder) if another
    process holds it."""
    location = os.fspath(files.path(workdir) / LOCK_FILE)
    if _held.get(location):
        _held[location] += 1
        try:
            yield
        finally:
            _held[location] -= 1
        return
    releases: list[Callable[[], None]] = []  # process 0's

    def acquire() -> None:
        releases.append(_acquire(location))

    hosts.agree(acquire)  # process 0 takes it; its UserError is raised on every process
    _held[location] = 1
    try:
        yield
    finally:
        del _held[location]
        for release in releases:
            release()


def _acquire(location: str) -> Callable[[], None]:
    """Takes the lock at `location`; returns what releases it."""
    if not files.is_remote(location):
        return _acquire_file(location)
    store = GcsObject(location) if location.startswith("gs://") else None
    problem = "only gs:// is supported" if store is None else store.connect()
    if problem:
        logging.warning("%s: no lock on this store (%s); nothing stops a second gbair process from writing this "
                        "workdir at the same time", location, problem)
        return lambda: None
    return LeasedLock(store, location).acquire()


def _busy(location: str, info: dict[str, Any] | None, more: str = "") -> UserError:
    return UserError(f"{os.path.dirname(location)} is in use by another gbair process: {describe(info)} holds "
                     f"{location}{more}; wait for it to finish (or stop it), or delete the lock file if you are "
                     f"sure no gbair process uses this workdir")


# ---- local and network disks -------------------------------------------------------------------

def _acquire_file(location: str) -> Callable[[], None]:
    os.makedirs(os.path.dirname(location), exist_ok=True)
    while True:
        fd = os.open(location, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            info = _wait_for_info(fd)
            os.close(fd)
            raise _busy(location, info) from None
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
            if os.path.getsize(location) == 0:
                os.unlink(location)
            logging.warning("%s: this file system has no locks (%s); nothing stops a second gbair process "
                            "from writing this workdir at the same time", location, e)
            return lambda: None
        if _is_file_at(fd, location):
            break
        os.close(fd)  # the holder we raced with deleted this file on release: lock a fresh one
    previous = _read_info(fd)
    if previous is not None:
        logging.warning("%s: taking over the lock left by %s, which ended without releasing it", location,
                        describe(previous))
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(holder_info()) + "\n").encode(), 0)
    os.fsync(fd)

    def release() -> None:
        if _is_file_at(fd, location):  # (someone may have deleted it and another run made its own)
            os.unlink(location)  # before unlocking: a process that then gets this file's lock sees it gone
        os.close(fd)

    return release


def _is_file_at(fd: int, location: str) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(location))
    except FileNotFoundError:
        return False


def _read_info(fd: int) -> dict[str, Any] | None:
    data = os.pread(fd, 65536, 0)
    try:
        return json.loads(data) if data.strip() else None
    except ValueError:
        return {"host": "?", "pid": "?", "started": f"unreadable lock file {data[:40]!r}"}


def _wait_for_info(fd: int, seconds: float = 2.0) -> dict[str, Any] | None:
    """The holder's details: a holder that has just taken the lock may not have written them yet."""
    deadline = time.time() + seconds
    while (info := _read_info(fd)) is None and time.time() < deadline:
        time.sleep(0.05)
    return info


# ---- object stores -----------------------------------------------------------------------------

class ObjectStore(Protocol):
    """One object with generation preconditions (what GCS offers; tests use a fake)."""

    def read(self) -> tuple[bytes, Any] | None:
        """(content, generation), or None if there is no object."""

    def create(self, data: bytes) -> Any | None:
        """Creates the object if absent: its generation, or None if it exists."""

    def replace(self, data: bytes, generation: Any) -> Any | None:
        """Overwrites the object if still at `generation`: the new generation, or None."""

    def delete(self, generation: Any) -> bool:
        """Deletes the object if still at `generation`."""


class LeasedLock:
    """The lock as an object in a store: created if absent, renewed every LEASE_S / 4 by a daemon
    thread, broken by a later run once not renewed for LEASE_S."""

    def __init__(self, store: ObjectStore, location: str, lease_s: float = LEASE_S,
                 clock: Callable[[], float] = time.time):
        self.store, self.location, self.lease_s, self.clock = store, location, lease_s, clock
        self.generation: Any = None
        self.stop, self.mutex = threading.Event(), threading.Lock()  # renew and release never overlap

    def _info(self) -> bytes:
        return (json.dumps({**holder_info(), "renewed": self.clock()}) + "\n").encode()

    def take(self) -> None:
        """Creates the lock object, or breaks an expired one; UserError if a live holder has it."""
        self.generation = self.store.create(self._info())
        if self.generation is not None:
            return
        found = self.store.read()
        if found is None:  # released in between: try once more
            self.generation = self.store.create(self._info())
        else:
            data, generation = found
            try:
                info = json.loads(data)
                renewed = float(info["renewed"])
            except (ValueError, KeyError, TypeError):
                info, renewed = None, float("-inf")
            expires = renewed + self.lease_s
            if self.clock() < expires:
                when = datetime.datetime.fromtimestamp(expires).isoformat(timespec="seconds")
                raise _busy(self.location, info, f" (its lease, renewed every {self.lease_s / 4:.0f} s, expires at "
                                                 f"{when} if it is not renewed)")
            if self.store.delete(generation):
                logging.warning("%s: taking over the lock of %s, whose lease expired %.0f s ago (not renewed for "
                                "%.0f s)", self.location, describe(info), self.clock() - expires, self.lease_s)
                self.generation = self.store.create(self._info())
        if self.generation is None:
            raise _busy(self.location, None, " (another process took it just now)")

    def renew(self) -> bool:
        """Rewrites the lock with a fresh lease; False (with an error) if someone else changed it."""
        with self.mutex:
            if self.stop.is_set():
                return False
            generation = self.store.replace(self._info(), self.generation)
        if generation is None:
            logging.error("%s: the lock was broken or changed by another process; this run is no longer the "
                          "workdir's only writer", self.location)
            return False
        self.generation = generation
        return True

    def release(self) -> None:
        with self.mutex:
            self.stop.set()
            self.store.delete(self.generation)

    def acquire(self) -> Callable[[], None]:
        """take, then renew in the background until released; returns `release`."""
        self.take()

        def keep() -> None:
            while not self.stop.wait(self.lease_s / 4) and self.renew():
                pass

        threading.Thread(target=keep, name="gbair-lock-lease", daemon=True).start()
        return self.release


class GcsObject:
    """ObjectStore over google-cloud-storage (generation preconditions); not exercised by the tests."""

    def __init__(self, url: str):
        self.bucket_name, _, self.name = url[len("gs://"):].partition("/")

    def connect(self) -> str | None:
        """None when connected, else why not (no google-cloud-storage, no credentials)."""
        try:
            from google.cloud import storage  # pylint: disable=import-outside-toplevel
            self.blob = storage.Client().bucket(self.bucket_name).blob(self.name)
        except ImportError:
            return "gs:// locks need google-cloud-storage: pip install google-cloud-storage"
        except Exception as e:  # pylint: disable=broad-except  (credentials, project: google.auth raises many)
            return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"
        return None

    def _try(self, action: Callable[[], Any]) -> bool:
        """False when a generation precondition fails (or the object is gone)."""
        from google.api_core import exceptions  # pylint: disable=import-outside-toplevel
        try:
            action()
        except (exceptions.PreconditionFailed, exceptions.NotFound):
            return False
        return True

    def read(self) -> tuple[bytes, Any] | None:
        blob = self.blob.bucket.get_blob(self.name)
        if blob is None:
            return None
        out: list[bytes] = []
        if not self._try(lambda: out.append(blob.download_as_bytes(if_generation_match=blob.generation))):
            return self.read()  # changed while read: read the new one
        return out[0], blob.generation

    def create(self, data: bytes) -> Any | None:
        return self.blob.generation if self._try(lambda: self.blob.upload_from_string(
            data, if_generation_match=0)) else None

    def replace(self, data: bytes, generation: Any) -> Any | None:
        return self.blob.generation if self._try(lambda: self.blob.upload_from_string(
            data, if_generation_match=generation)) else None

    def delete(self, generation: Any) -> bool:
        return self._try(lambda: self.blob.delete(if_generation_match=generation))
