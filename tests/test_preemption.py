"""SIGTERM / SIGINT through the command line: the run stops at an epoch boundary, saved,
says where and how to resume, exits 75; the resumed run ends bit for bit where an
uninterrupted run ends. A second signal exits at once.

The tiny MNIST config of tests/test_faults.py, checkpointed only at its last epoch, so
the checkpoint found after the signal can only be the one the signal caused.
"""

import os
import re
import signal
import time

import pytest

from tests import test_faults
from tests.test_faults import EPOCHS, RUN_TIMEOUT, assert_same_run, read_log

ARGS = [a for a in test_faults.ARGS if "checkpoint_every" not in a] + [
    "--config.train.checkpoint_every=100"
]


def start(workdir, log, cache):
    return test_faults.start(workdir, log, cache, ARGS)


def epochs_logged(workdir) -> int:
    try:
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def signal_after_first_epoch(proc, workdir, signals=(signal.SIGTERM,), gap=0.0):
    """Sends `signals` once the run has logged its first epoch, each once the one before has
    been delivered and `gap` seconds have passed; returns the exit status.

    (Two signals sent back to back can reach a busy process as one: the kernel keeps one
    pending signal of a kind.)"""
    deadline = time.monotonic() + RUN_TIMEOUT
    while epochs_logged(workdir) < 1:
        assert proc.poll() is None and time.monotonic() < deadline, "no epoch was logged"
        time.sleep(0.01)
    for s in signals:
        proc.send_signal(s)
        while proc.poll() is None and pending(proc.pid, s):
            assert time.monotonic() < deadline, f"{s.name} stayed pending"
            time.sleep(0.001)
        time.sleep(gap)
    return test_faults.finish(proc)


def pending(pid: int, signum: int) -> bool:
    """Whether `signum` is pending for process `pid` (Linux /proc/<pid>/status); False once
    the process has gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            masks = [line.split()[1] for line in f if line.startswith(("SigPnd:", "ShdPnd:"))]
    except FileNotFoundError:
        return False
    return any(int(mask, 16) >> (signum - 1) & 1 for mask in masks)


@pytest.mark.slow  # three main.py runs; in process: the two tests below
def test_sigterm_saves_says_how_to_resume_and_resumes_bit_identical(tmp_path):
    reference, stopped = str(tmp_path / "reference"), str(tmp_path / "stopped")
    ref = start(reference, open(tmp_path / "reference.log", "w"), "xla-preempt-ref")
    proc = start(stopped, open(tmp_path / "stopped.log", "w"), "xla-preempt")
    status = signal_after_first_epoch(proc, stopped)
    log = read_log(tmp_path / "stopped.log")
    assert status == 75, log[-3000:]
    assert "Traceback" not in log and "error:" not in log, log[-3000:]
    lines = [line for line in log.splitlines() if line.startswith("stopped by")]
    assert len(lines) == 1, log[-3000:]
    match = re.fullmatch(
        rf"stopped by SIGTERM after epoch (\d+) of {EPOCHS}; checkpoint \1 saved in "
        rf"{re.escape(os.path.join(stopped, 'checkpoints'))}; resume with: (.*)",
        lines[0],
    )
    assert match, lines[0]
    epoch = int(match.group(1))
    assert 1 <= epoch < EPOCHS
    assert "main.py" in match.group(2) and f"--workdir={stopped}" in match.group(2)
    # the only checkpoint is the signal's (checkpoint_every=100)
    assert sorted(os.listdir(os.path.join(stopped, "checkpoints"))) == [str(epoch)]
    assert test_faults.finish(ref) == 0, read_log(tmp_path / "reference.log")[-3000:]

    resumed = start(stopped, open(tmp_path / "resumed.log", "w"), "xla-preempt")
    assert test_faults.finish(resumed) == 0, read_log(tmp_path / "resumed.log")[-3000:]
    assert f"resumed from epoch {epoch}" in read_log(tmp_path / "resumed.log")
    assert_same_run(reference, stopped)


@pytest.mark.slow  # a main.py run (signal infrastructure)
def test_second_signal_exits_at_once(tmp_path):
    workdir = str(tmp_path / "run")
    proc = start(workdir, open(tmp_path / "run.log", "w"), "xla-preempt")
    status = signal_after_first_epoch(proc, workdir, (signal.SIGINT, signal.SIGINT), gap=0.05)
    log = read_log(tmp_path / "run.log")
    assert status == 128 + signal.SIGINT, log[-3000:]
    assert "second SIGINT: exiting at once, without saving" in log, log[-3000:]
    assert "Traceback" not in log
    # nothing saved; the second signal may land inside the save it cut short, whose
    # unfinished orbax tmp directory the next start removes (checkpoints.make_manager)
    left = os.listdir(os.path.join(workdir, "checkpoints"))
    assert all(name.endswith(".orbax-checkpoint-tmp") for name in left), left


def _signal_self_after(monkeypatch, module, name):
    """Makes `module.name` send this process SIGTERM once it has run."""
    original = getattr(module, name)

    def then_signal(*args, **kwargs):
        out = original(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.5)  # the watcher thread sets the flag
        return out

    monkeypatch.setattr(module, name, then_signal)


def test_a_signal_while_loading_stops_before_anything_is_written(tmp_path, monkeypatch):
    from exon_jax import experiment, training
    from exon_jax.ops import preemption
    from tests.synthetic import small_mnist_config, synthetic_mnist

    _signal_self_after(monkeypatch, experiment, "build_validated")  # the data loaded, split
    with pytest.raises(preemption.Preempted) as stopped:
        training.train_and_evaluate(
            small_mnist_config(2), str(tmp_path / "w"), synthetic_mnist(), progress=False
        )
    assert str(stopped.value) == "stopped by SIGTERM during setup, before training; nothing to save"
    assert not os.path.exists(tmp_path / "w")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers put back


def test_a_signal_while_compiling_stops_before_the_first_epoch(tmp_path, monkeypatch):
    from exon_jax import training
    from exon_jax.ops import preemption
    from tests.synthetic import small_mnist_config, synthetic_mnist

    _signal_self_after(monkeypatch, training, "_check_memory")  # runs after the compilation
    workdir = tmp_path / "w"
    with pytest.raises(preemption.Preempted) as stopped:
        training.train_and_evaluate(
            small_mnist_config(2), str(workdir), synthetic_mnist(), progress=False
        )
    assert str(stopped.value) == (
        f"stopped by SIGTERM before training epoch 1 of 2; nothing new to save (checkpoints "
        f"in {workdir / 'checkpoints'})"
    )
    assert not os.listdir(workdir / "checkpoints")


def test_an_ignored_signal_stays_ignored_and_the_handlers_come_back():
    """A process started with SIGINT ignored (a background job) keeps ignoring it."""
    from exon_jax.ops import preemption

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with preemption.StopRequests() as stop:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.3)
            assert not stop.requested
            os.kill(os.getpid(), signal.SIGTERM)
            deadline = time.monotonic() + 5
            while not stop.requested and time.monotonic() < deadline:
                time.sleep(0.01)
            assert stop.requested and stop.signal_name == "SIGTERM"
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGINT, before)
