"""main.py: every expected failure is one line on stderr and exit status 1, no traceback."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SLOW = pytest.mark.slow


def run_main(*args, timeout=300):
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "main.py"), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
    )
    return out.returncode, out.stderr.strip()


def assert_one_line(rc, err, expected):
    assert rc == 1, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and expected in lines[0], err


@pytest.mark.parametrize(
    "args, expected",
    [
        # One main.py start each (~13-30 s loaded): the default suite keeps one main.py start
        # (test_evaluate_without_a_run_is_one_line); the refusals themselves are checked in
        # process (test_experiment.py, test_data.py); all run with -m slow.
        pytest.param(
            ["--config.train.no_such_field=1"],
            "no such config field: --config.train.no_such_field",
            marks=SLOW,
        ),
        pytest.param(["--config.train.epochs=abc"], "--config.train.epochs", marks=SLOW),
        pytest.param(
            ["--config.train.max_checkpoints=0"], "config.train.max_checkpoints", marks=SLOW
        ),
        pytest.param(["--config.data.max_test=-5"], "config.data.max_test", marks=SLOW),
        pytest.param(
            ["--config.optimizer.learning_rate=1e39"],
            "config.optimizer.learning_rate",
            marks=SLOW,
        ),
        pytest.param(
            ["--config.prior.layout=file", "--config.prior.file=/nonexistent.json"],
            "config.prior.file: prior file /nonexistent.json: no such file",
            marks=SLOW,
        ),
        pytest.param(
            ["--config.data.name=nodata", "--config.data.source=files"], "nodata", marks=SLOW
        ),
    ],
)
def test_bad_config_is_one_line(tmp_path, args, expected):
    rc, err = run_main("--config=configs/mnist.py:tiny", f"--workdir={tmp_path / 'w'}", *args)
    assert_one_line(rc, err, expected)


def test_evaluate_without_a_run_is_one_line(tmp_path):
    rc, err = run_main("--mode=evaluate", f"--workdir={tmp_path}")
    assert_one_line(rc, err, "config.json not found")


@pytest.mark.slow  # a main.py start; the default suite keeps one (above)
def test_debug_shows_the_traceback(tmp_path):
    rc, err = run_main("--mode=evaluate", f"--workdir={tmp_path}", "--debug")
    assert rc != 0 and "Traceback" in err


@pytest.mark.slow  # a main.py start
def test_busy_workdir_is_one_line(tmp_path):
    """A second run into a workdir held by another process names that process."""
    from exon_jax.ops.workdir_lock import WorkdirLock

    with WorkdirLock(str(tmp_path)):
        rc, err = run_main("--config=configs/mnist.py:tiny", f"--workdir={tmp_path}")
    assert_one_line(rc, err, f"is in use by process {os.getpid()}")


@pytest.mark.slow  # a main.py start that trains; in-process: test_experiment.py
def test_divergence_is_one_line(tmp_path):
    """Weights that overflow end the run in one line naming the epoch; nothing non-finite saved."""
    rc, err = run_main(
        "--config=configs/mnist.py:tiny",
        f"--workdir={tmp_path}",
        "--config.data.max_unlabelled=500",
        "--config.optimizer.learning_rate=3e38",
        "--config.analysis.figures=False",
    )
    assert_one_line(rc, err, "non-finite loss or parameters in epoch 1")
    assert os.path.exists(tmp_path / "error.log")
