"""gbair.lock: one writer per workdir. A file lock held by another open file (as another process holds
it), a lock file left by a dead process, and the object-store lease logic over a fake store.
Two real gbair.main processes and a SIGKILL series: tests/test_recovery.py."""

import fcntl
import json
import logging
import os
import socket

import pytest

from gbair import UserError, lock


def test_the_lock_file_names_its_holder_while_held_and_is_gone_after(tmp_path):
    path = tmp_path / lock.LOCK_FILE
    with lock.hold(tmp_path):
        info = json.loads(path.read_text())
        assert (info["pid"], info["host"]) == (os.getpid(), socket.gethostname())
        with lock.hold(tmp_path):  # re-entrant: gbair.main holds it and the job takes it again
            assert path.exists()
        assert path.exists()
    assert not path.exists()
    with pytest.raises(RuntimeError, match="boom"), lock.hold(tmp_path):  # released on error too
        raise RuntimeError("boom")
    assert not path.exists()


def test_a_held_lock_is_refused_in_one_line_naming_the_holder(tmp_path):
    path = tmp_path / lock.LOCK_FILE
    holder = {"host": "node-7", "pid": 4242, "started": "2026-01-02T03:04:05"}
    path.write_text(json.dumps(holder))
    fd = os.open(path, os.O_RDWR)  # another open file description: to flock, another process
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(UserError) as refused, lock.hold(tmp_path):
            pytest.fail("the lock was taken twice")
    finally:
        os.close(fd)
    message = str(refused.value)
    assert "\n" not in message and f"{tmp_path} is in use by another gbair process" in message
    assert "pid 4242 on host node-7 (started 2026-01-02T03:04:05)" in message and str(path) in message
    assert "wait for it to finish" in message and "delete the lock file" in message
    assert json.loads(path.read_text()) == holder  # untouched


def test_a_lock_file_left_by_a_dead_process_is_taken_over_with_a_warning(tmp_path, caplog):
    path = tmp_path / lock.LOCK_FILE
    path.write_text(json.dumps({"host": "node-7", "pid": 4242, "started": "2026-01-02T03:04:05"}))
    with caplog.at_level(logging.WARNING), lock.hold(tmp_path):  # no process holds its OS lock
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert "taking over the lock left by pid 4242 on host node-7" in caplog.text
    assert not path.exists()


class FakeStore:
    """One object with generations, as GCS keeps them."""

    def __init__(self):
        self.data, self.generation = None, 0

    def read(self):
        return None if self.data is None else (self.data, self.generation)

    def create(self, data):
        if self.data is not None:
            return None
        self.data, self.generation = data, self.generation + 1
        return self.generation

    def replace(self, data, generation):
        if self.data is None or generation != self.generation:
            return None
        self.data, self.generation = data, self.generation + 1
        return self.generation

    def delete(self, generation):
        if self.data is None or generation != self.generation:
            return False
        self.data = None
        return True


def test_an_object_store_lease_refuses_a_live_holder_and_is_broken_once_expired(caplog):
    store, now = FakeStore(), [1000.0]
    clock = lambda: now[0]  # noqa: E731
    first = lock.LeasedLock(store, "gs://b/run/gbair.lock", lease_s=600, clock=clock)
    first.take()
    second = lock.LeasedLock(store, "gs://b/run/gbair.lock", lease_s=600, clock=clock)
    now[0] += 590
    assert first.renew()  # renewed: the lease runs 600 s from now
    now[0] += 590
    with pytest.raises(UserError, match=rf"pid {os.getpid()} on host .* holds gs://b/run/gbair.lock \(its lease"):
        second.take()
    now[0] += 20  # 610 s without a renewal: the holder is taken for dead
    with caplog.at_level(logging.WARNING):
        second.take()
    assert "whose lease expired 10 s ago" in caplog.text
    assert json.loads(store.read()[0])["renewed"] == now[0]
    assert not first.renew()  # the old holder learns it lost the lock, and cannot delete the new one
    first.release()
    assert store.read() is not None
    second.release()
    assert store.read() is None


def test_a_store_without_a_lock_primitive_runs_unlocked_with_a_warning(caplog, monkeypatch):
    monkeypatch.setattr(lock.GcsObject, "connect", lambda self: "gs:// locks need google-cloud-storage")
    with caplog.at_level(logging.WARNING), lock.hold("gs://bucket/run"):
        pass
    assert "gs://bucket/run/gbair.lock: no lock on this store (gs:// locks need google-cloud-storage)" in caplog.text
