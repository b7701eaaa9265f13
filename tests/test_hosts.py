"""Several processes, one sweep (gbair.hosts) and workdirs given as URLs (gbair.files).

The sweep runs as 2 jax.distributed CPU processes with one device each, and as 1 process with 2
devices (the same mesh): the results must be identical, gbair's files written once (by process 0),
and a SIGKILL of both processes followed by a rerun must give the same results again.
"""

import os
import signal
import socket
import subprocess
import time

import jax
import pytest
from etils import epath

from gbair import UsageError, UserError, files, hosts
from tests.test_recovery import REPO, read_rows, sweep_command, without_wall_time

SMALL = ("--gin.Experiment.strategy_names=['tracin','random']", "--gin.RecoveryConfig.iterations=1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def launch(workdir, model_dir, processes: int):
    """The tiny sweep as `processes` jax.distributed processes of 1 CPU device, or 1 process of 2 devices."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    if processes == 1:
        return [subprocess.Popen(sweep_command(workdir, model_dir, *SMALL), cwd=REPO, text=True,
                                 env={**env, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)]
    port = free_port()
    return [subprocess.Popen(sweep_command(workdir, model_dir, *SMALL, f"--coordinator_address=localhost:{port}",
                                           f"--num_processes={processes}", f"--process_id={i}"),
                             cwd=REPO, env=env, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for i in range(processes)]


def finish(processes) -> list[str]:
    logs = [p.communicate(timeout=600)[1] for p in processes]
    for p, log in zip(processes, logs):
        assert p.returncode == 0, log[-4000:]
    return logs


def gbair_files(workdir) -> list[str]:
    """What gbair itself writes (Orbax checkpoints are collective, one part per process, by design);
    TensorBoard event files, named by host, pid and time, as `EVENTS`."""
    return sorted(str(p.parent.relative_to(workdir) / ("EVENTS" if "tfevents" in p.name else p.name))
                  for p in workdir.rglob("*") if p.is_file() and "checkpoints" not in p.parts)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, tiny_bert_dir):
    """The sweep in one process with 2 devices, its workdir given as a file:// URL, then run again."""
    workdir = tmp_path_factory.mktemp("one")
    first = finish(launch(f"file://{workdir}", tiny_bert_dir, 1))[0]
    rows = read_rows(workdir)
    again = finish(launch(f"file://{workdir}", tiny_bert_dir, 1))[0]
    return workdir, rows, first, again


def test_a_file_url_workdir_goes_through_the_path_layer_and_resumes(one_process):
    workdir, rows, first, again = one_process
    assert "training run 1/" in first and (workdir / "results.csv").exists()
    assert not (REPO / "file:").exists()
    assert "training run" not in again  # resumed: nothing trained twice
    assert read_rows(workdir) == rows


def test_two_processes_give_the_results_of_one_and_write_each_file_once(one_process, tmp_path, tiny_bert_dir):
    reference, rows, _, _ = one_process
    logs = finish(launch(tmp_path, tiny_bert_dir, 2))
    assert "process 1 of 2" in logs[1]
    assert without_wall_time(read_rows(tmp_path)) == without_wall_time(rows)
    written = gbair_files(tmp_path)
    assert written == gbair_files(reference)  # so one event file per TensorBoard folder, as with one process
    assert len(written) == len(set(written)) and any(name.endswith("EVENTS") for name in written)


def test_sigkill_of_both_processes_then_rerun_gives_the_same_results(one_process, tmp_path, tiny_bert_dir):
    _, rows, _, _ = one_process
    processes = launch(tmp_path, tiny_bert_dir, 2)
    deadline = time.time() + 300
    while time.time() < deadline and not list(tmp_path.glob("cells/*/*/*/tracin/it1/state.json")):
        time.sleep(0.2)
    for p in processes:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert not (tmp_path / "results.csv").exists() or len(read_rows(tmp_path)) < len(rows)
    finish(launch(tmp_path, tiny_bert_dir, 2))
    assert without_wall_time(read_rows(tmp_path)) == without_wall_time(rows)


def test_paths_keep_object_store_urls_and_make_local_paths_absolute(tmp_path, monkeypatch):
    remote = files.path("gs://bucket/run") / "cells" / "x.json"
    assert files.is_remote(remote) and os.fspath(remote) == "gs://bucket/run/cells/x.json"
    monkeypatch.chdir(tmp_path)
    assert files.path("runs/a") == epath.Path(tmp_path / "runs/a")
    assert files.path(f"file://{tmp_path}/b") == epath.Path(tmp_path / "b") and not files.is_remote(f"{tmp_path}/b")


def test_read_json_and_agree_with_one_process(tmp_path):
    assert files.read_json(tmp_path / "missing.json") is None
    files.write_json(tmp_path / "a.json", {"done": [1, 2]})
    assert files.read_json(tmp_path / "a.json") == {"done": [1, 2]}
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="bad.json: not readable JSON"):
        files.read_json(tmp_path / "bad.json")
    assert jax.process_count() == 1 and hosts.agree(lambda: [3]) == [3]


def test_partial_coordinator_flags_are_a_usage_error():
    with pytest.raises(UsageError, match="give all three"):
        hosts.initialize(None, "localhost:1234", None, 0)
    with pytest.raises(UsageError, match="--nodistributed"):
        hosts.initialize(False, "localhost:1234", 2, 0)
    hosts.initialize(False)  # one process: nothing to join
