"""Several processes joined by jax.distributed (Gloo on CPU) give the numbers of one process.

The 2-epoch pre-design sweep (configs/mnist_predesign.py, 4 models, a smaller unlabelled
set so it takes seconds) as 2 processes x 2 CPU devices writes the sweep_results.csv of
1 process x 4 devices (and of 1 x 1, marked slow) to float32 rounding: XLA compiles each
layout's program on its own, and the parameters after two epochs differ by at most a few
float32 ulps (1.4e-7 measured), which moves the 6th significant digit of a metric now and
then. One of the two processes killed mid-run and both restarted resume from the last
checkpoint and end bit for bit where the uninterrupted two-process run ends; a process
that fails ends the other within the heartbeat timeout.
"""

import csv
import io
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST_NPZ = os.path.join(ROOT, "data", "mnist", "mnist.npz")
pytestmark = pytest.mark.skipif(
    not os.path.exists(MNIST_NPZ), reason="run `python scripts/fetch_mnist.py` first"
)
SWEEP = [
    "--config=configs/mnist_predesign.py",
    "--config.train.epochs=2",
    "--config.train.checkpoint_every=1",
    "--config.data.max_unlabelled=1500",
    "--config.train.batch_unlabelled=500",
    "--config.train.batch_labelled=100",
    "--config.data.max_test=300",
    "--config.analysis.figures=False",
    "--config.analysis.tensorboard_images=False",
]
TIMEOUT = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _env(devices: int) -> dict:
    return dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
    )


def _start(workdir, devices, extra=(), process=None, port=None):
    args = [sys.executable, os.path.join(ROOT, "main.py"), *SWEEP, f"--workdir={workdir}", *extra]
    if process is not None:
        args += [
            f"--coordinator_address=localhost:{port}",
            "--num_processes=2",
            f"--process_id={process}",
            "--heartbeat_timeout=10",
        ]
    return subprocess.Popen(
        args, cwd=ROOT, env=_env(devices), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _two_processes(workdir, extra=()):
    port = _free_port()
    return [_start(workdir, 2, extra, i, port) for i in range(2)]


def _finish(processes):
    outputs = [p.communicate(timeout=TIMEOUT) for p in processes]
    for p, (_, err) in zip(processes, outputs):
        assert p.returncode == 0, err[-3000:]
    return outputs


def _csv(workdir):
    with open(os.path.join(workdir, "sweep_results.csv")) as f:
        return f.read()


def _assert_same_numbers(a: str, b: str, rtol: float = 2e-5):
    rows_a, rows_b = list(csv.DictReader(io.StringIO(a))), list(csv.DictReader(io.StringIO(b)))
    assert [r["name"] for r in rows_a] == [r["name"] for r in rows_b]
    for ra, rb in zip(rows_a, rows_b):
        for key in ra:
            if key != "name":
                assert float(ra[key]) == pytest.approx(float(rb[key]), rel=rtol, abs=1e-6), key


@pytest.fixture(scope="module")
def one_process_four_devices(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("p1d4")
    _finish([_start(workdir, 4)])
    return workdir, _csv(workdir)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("p2d2")
    _finish(_two_processes(workdir))
    return workdir, _csv(workdir)


@pytest.mark.slow  # three main.py processes (~30 s quiet)
def test_two_processes_equal_one_process(one_process_four_devices, two_processes):
    _assert_same_numbers(two_processes[1], one_process_four_devices[1])
    workdir = two_processes[0]
    assert not os.path.exists(workdir / "figures")
    assert sorted(os.listdir(workdir / "tensorboard")) == [f"distance={d}" for d in (16, 24, 32, 8)]


@pytest.mark.slow
def test_one_device_equals_four_devices(one_process_four_devices, tmp_path):
    _finish([_start(tmp_path, 1)])
    _assert_same_numbers(_csv(tmp_path), one_process_four_devices[1])


@pytest.mark.slow  # ~50 s: four more process starts; run with -m slow
def test_killed_process_resumes_to_the_same_numbers(two_processes, tmp_path):
    """SIGKILL process 1 once epoch 1 is saved; process 0 stops within the heartbeat timeout."""
    workdir = tmp_path / "killed"
    processes = _two_processes(workdir)
    first = workdir / "checkpoints" / "1"
    deadline = time.monotonic() + TIMEOUT
    while not (first / "_CHECKPOINT_METADATA").exists():
        assert time.monotonic() < deadline and processes[1].poll() is None, "no checkpoint"
        time.sleep(0.05)
    processes[1].send_signal(signal.SIGKILL)
    processes[0].communicate(timeout=60)  # ended by the coordination service
    assert processes[0].returncode != 0
    outputs = _finish(_two_processes(workdir))
    assert "resumed from epoch" in outputs[0][0] + outputs[0][1]
    assert _csv(workdir) == two_processes[1]


@pytest.mark.slow  # two process starts after the four-device run
def test_a_failing_process_ends_the_other(one_process_four_devices, tmp_path):
    """evaluate where process 1 cannot find its run: both end, process 1 says why in one line."""
    port = _free_port()
    trained = one_process_four_devices[0]
    good = subprocess.Popen(
        [
            sys.executable,
            os.path.join(ROOT, "main.py"),
            "--mode=evaluate",
            f"--workdir={trained}",
            f"--coordinator_address=localhost:{port}",
            "--num_processes=2",
            "--process_id=0",
            "--heartbeat_timeout=10",
        ],
        cwd=ROOT,
        env=_env(2),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    bad = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "main.py"),
            "--mode=evaluate",
            f"--workdir={tmp_path / 'missing'}",
            f"--coordinator_address=localhost:{port}",
            "--num_processes=2",
            "--process_id=1",
            "--heartbeat_timeout=10",
        ],
        cwd=ROOT,
        env=_env(2),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert bad.returncode == 1 and "error: " in bad.stderr and "Traceback" not in bad.stderr
    good.communicate(timeout=60)
    assert good.returncode != 0
