"""Processes of one run must agree: config, data, code checked before training; a signal
to one process stops every process at the same epoch, saved.

Two local processes joined by jax.distributed (Gloo on CPU, one device each) on the tiny
MNIST config of tests/test_faults.py.
"""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests import test_faults, test_preemption
from tests.test_multiprocess import MNIST_NPZ, _free_port

ROOT = test_faults.ROOT
TIMEOUT = 300
pytestmark = pytest.mark.skipif(not os.path.exists(MNIST_NPZ), reason="no data/mnist/mnist.npz")


def start_pair(workdir, extra=((), ()), args=None, logs=None):
    """Processes 0 and 1 of one run; extra[i] are process i's own flags. Their output is
    piped (text), or with `logs` process i's stdout and stderr go to the file logs[i]."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env.update(JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    return [
        subprocess.Popen(
            [
                sys.executable,
                os.path.join(ROOT, "main.py"),
                *(args or test_faults.ARGS),
                f"--workdir={workdir}",
                f"--compilation_cache={test_faults.cache_dir('xla-agreement')}",
                f"--coordinator_address=localhost:{port}",
                "--num_processes=2",
                f"--process_id={i}",
                "--heartbeat_timeout=10",
                *extra[i],
            ],
            cwd=ROOT,
            env=env,
            **(
                dict(stdout=open(logs[i], "w"), stderr=subprocess.STDOUT)
                if logs
                else dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            ),
        )
        for i in range(2)
    ]


@pytest.mark.slow  # two processes (multi-process infrastructure)
def test_a_process_with_another_config_stops_every_process(tmp_path):
    workdir = tmp_path / "run"
    processes = start_pair(workdir, ((), ("--config.loss.lambda1=10",)))
    outputs = [p.communicate(timeout=TIMEOUT) for p in processes]
    for p, (out, err) in zip(processes, outputs):
        assert p.returncode == 1, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert lines == [
            "error: process 1 differs from process 0 in config.loss.lambda1: every process of "
            "a run must be started with the same config, data and code"
        ], err[-3000:]
    assert not os.path.exists(workdir / "checkpoints")  # refused before anything was written


@pytest.mark.slow  # two processes (multi-process infrastructure)
def test_a_process_with_other_data_stops_every_process(tmp_path):
    """Process 1 reads a permuted copy of process 0's data set (its own data.dir)."""
    import numpy as np

    from tests.synthetic import mnist_slice

    data = mnist_slice(3000, 300, "mnist_slice")
    order = np.random.default_rng(0).permutation(3000)
    for folder, index in (("p0", np.arange(3000)), ("p1", order)):
        np.savez(
            tmp_path / f"{folder}.npz",
            train_images=data.train.images[index],
            train_labels=data.train.labels[index],
            test_images=data.test.images,
            test_labels=data.test.labels,
        )
        (tmp_path / folder).mkdir()
        os.rename(tmp_path / f"{folder}.npz", tmp_path / folder / "mnist_slice.npz")
    args = [*test_faults.ARGS, "--config.data.name=mnist_slice", "--config.data.source=files"]
    processes = start_pair(
        tmp_path / "run",
        ((f"--config.data.dir={tmp_path / 'p0'}",), (f"--config.data.dir={tmp_path / 'p1'}",)),
        args=args,
    )
    for p in processes:
        _, err = p.communicate(timeout=TIMEOUT)
        assert p.returncode == 1 and "Traceback" not in err, err[-3000:]
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert lines == [
            "error: process 1 differs from process 0 in the data set (sha256 of its arrays): "
            "every process of a run must be started with the same config, data and code"
        ], err[-3000:]


@pytest.mark.slow  # three two-process runs: ~1-2 min on 2 cores
def test_sigterm_to_one_process_stops_both_at_one_epoch_and_resumes(tmp_path):
    args = test_preemption.ARGS
    reference = str(tmp_path / "reference")  # same layout: two processes, one device each
    for p in start_pair(reference, args=args):
        _, err = p.communicate(timeout=TIMEOUT)
        assert p.returncode == 0, err[-3000:]
    workdir = str(tmp_path / "run")
    processes = start_pair(workdir, args=args)
    deadline = time.monotonic() + TIMEOUT
    while test_preemption.epochs_logged(workdir) < 1:
        assert time.monotonic() < deadline and all(p.poll() is None for p in processes)
        time.sleep(0.01)
    processes[1].send_signal(signal.SIGTERM)
    outputs = [p.communicate(timeout=TIMEOUT) for p in processes]
    epochs = []
    for p, (out, err) in zip(processes, outputs):
        assert p.returncode == 75, err[-3000:]
        lines = [line for line in err.splitlines() if line.startswith("stopped by")]
        assert len(lines) == 1, err[-3000:]
        epochs.append(int(re.match(r"stopped by .* after epoch (\d+) ", lines[0]).group(1)))
    assert "stopped by SIGTERM" in outputs[1][1]
    assert "stopped by a signal to another process" in outputs[0][1]
    assert epochs[0] == epochs[1]
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == [str(epochs[0])]
    resumed = start_pair(workdir, args=args)
    for p in resumed:
        _, err = p.communicate(timeout=TIMEOUT)
        assert p.returncode == 0, err[-3000:]
    assert test_faults.results_numbers(workdir) == test_faults.results_numbers(reference)


def _pair_past_one_epoch(workdir):
    """Two processes of test_preemption's run, returned once one epoch is logged."""
    processes = start_pair(workdir, args=test_preemption.ARGS)
    deadline = time.monotonic() + TIMEOUT
    while test_preemption.epochs_logged(workdir) < 1:
        assert time.monotonic() < deadline and all(p.poll() is None for p in processes)
        time.sleep(0.01)
    return processes


@pytest.mark.slow  # a two-process run to its first epoch: ~1 min on 2 cores
def test_a_dying_peer_ends_the_other_in_one_line(tmp_path):
    workdir = str(tmp_path / "run")
    processes = _pair_past_one_epoch(workdir)
    processes[1].send_signal(signal.SIGKILL)
    _, err = processes[0].communicate(timeout=TIMEOUT)
    assert processes[0].returncode == 1, err[-3000:]
    assert "Traceback" not in err and "Check failure" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.strip() and "%|" not in line]
    assert len(lines) == 1 and lines[0].startswith(
        "error: another process of this run stopped or cannot be reached ("
    ), err[-3000:]
    assert f"resume from the last checkpoint in {workdir}/checkpoints" in lines[0]


@pytest.mark.slow  # a two-process run to its first epoch: ~1 min on 2 cores
def test_a_hung_peer_ends_the_other_in_one_line(tmp_path):
    """SIGSTOP (a hung node): the other process ends in one line, naming the silent process,
    before the coordination service's heartbeat timeout aborts it with a dump."""
    workdir = str(tmp_path / "run")
    processes = _pair_past_one_epoch(workdir)
    try:
        processes[1].send_signal(signal.SIGSTOP)
        _, err = processes[0].communicate(timeout=TIMEOUT)
    finally:
        processes[1].kill()
        processes[1].communicate()
    assert processes[0].returncode == 1, err[-3000:]
    assert "Traceback" not in err and "Terminating process" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.strip() and "%|" not in line]
    assert lines == [
        "error: another process of this run stopped or cannot be reached (process 1: no sign "
        "of life for 4 s: stopped, hung or gone); restart every process to resume from the "
        f"last checkpoint in {workdir}/checkpoints"
    ], err[-3000:]


@pytest.mark.slow  # a one-epoch run, then a two-process evaluation: ~40 s on 2 cores
def test_evaluate_with_an_override_on_one_process_stops_both(tmp_path):
    workdir = str(tmp_path / "run")
    trained = test_preemption.start(workdir, open(tmp_path / "run.log", "w"), "xla-agreement")
    assert test_faults.finish(trained) == 0, test_faults.read_log(tmp_path / "run.log")[-3000:]
    processes = start_pair(workdir, ((), ("--config.data.max_test=100",)), args=["--mode=evaluate"])
    for p in processes:
        _, err = p.communicate(timeout=TIMEOUT)
        assert p.returncode == 1 and "Traceback" not in err, err[-3000:]
        [line] = [line for line in err.splitlines() if line.startswith("error:")]
        assert line.startswith(
            "error: process 1 differs from process 0 in config.data.max_test: every process of "
            "a run must be started with the same config, data and code"
        ), err[-3000:]
