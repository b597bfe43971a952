"""SIGTERM inside a stepwise epoch (`config.train.epoch_loop = 'python'`, the revision on
CPU): the run stops after the step in progress, saves a partial-epoch checkpoint, says
where (epoch and step) and how to resume, exits 75; the resumed run skips the steps done
and ends bit for bit where an uninterrupted run ends (final states, metrics.jsonl,
results.json). A second signal exits at once.

Through the command line like tests/test_preemption.py. The signal is sent once the
progress bar (process 0's log) shows a few steps of the second epoch done, or, for the
quick EXoN epochs, once the first epoch is logged (a single process goes straight on into
the second epoch: the signal lands there, after its first step).
"""

import json
import os
import re
import signal
import time

import jax
import numpy as np
import pytest

from tests import test_faults, test_preemption
from tests.test_faults import read_log

EPOCHS = 2
# the tiny EXoN MNIST config stepped from Python: 2 epochs of 100 steps of 10 + 10 images
EXON_ARGS = [
    "--config=configs/mnist.py:tiny",
    f"--config.train.epochs={EPOCHS}",
    "--config.train.epoch_loop=python",
    "--config.train.batch_unlabelled=10",
    "--config.train.batch_labelled=10",
    "--config.train.checkpoint_every=100",
    "--config.train.eval_every=100",
    "--config.data.max_unlabelled=1000",
    "--config.data.max_test=200",
    "--config.analysis.figures=False",
    "--config.analysis.tensorboard_images=False",
]
# configs/mnist100_revision.py shrunk: its exon pipeline over 700 unlabelled images, 8 steps
REVISION_ARGS = [
    "--config=configs/mnist100_revision.py",
    "--config.revision.pipeline=exon",
    f"--config.train.epochs={EPOCHS}",
    "--config.train.checkpoint_every=100",
    "--config.train.eval_every=100",
    "--config.data.max_unlabelled=700",
    "--config.data.validation=100",
    "--config.data.max_test=100",
    "--config.analysis.figures=False",
    "--config.analysis.tensorboard_images=False",
]
STOPPED = re.compile(
    rf"stopped by (SIGTERM|a signal to another process) at step (\d+) of (\d+) in epoch 2 of "
    rf"{EPOCHS}; saved in (\S+); resume with: (.*)"
)


def signal_at_step(processes, log_path, step: int) -> None:
    """SIGTERM to the last of `processes` once the progress bar in `log_path` has counted
    `step` steps (over the run, from 1)."""
    deadline = time.monotonic() + test_faults.RUN_TIMEOUT
    while True:
        counts = re.findall(r"(\d+)/\d+ \[", read_log(log_path))
        if counts and int(counts[-1]) >= step:
            break
        assert time.monotonic() < deadline and all(p.poll() is None for p in processes)
        time.sleep(0.01)
    processes[-1].send_signal(signal.SIGTERM)


def start_pair(workdir, logs, args):
    """Processes 0 and 1 of one run (tests/test_agreement.py), process i's output in logs[i]."""
    from tests import test_agreement

    return test_agreement.start_pair(workdir, args=args, logs=logs)


def _stopped_line(log: str, workdir: str) -> tuple[int, int]:
    """(step, steps per epoch) of the one 'stopped by' line, checked."""
    lines = [line for line in log.splitlines() if line.startswith("stopped by")]
    assert len(lines) == 1, log[-3000:]
    match = STOPPED.fullmatch(lines[0])
    assert match, lines[0]
    step, total = int(match.group(2)), int(match.group(3))
    assert 1 <= step < total
    assert match.group(4) == os.path.join(workdir, "partial_epoch")
    assert "main.py" in match.group(5) and f"--workdir={workdir}" in match.group(5)
    return step, total


def _final_meta(workdir: str) -> dict:
    """The final checkpoint's meta record (its leaves' checksums included) without the
    wall-time fields."""
    with open(os.path.join(workdir, "checkpoints", str(EPOCHS), "meta", "metadata")) as f:
        meta = json.load(f)
    meta.pop("train_seconds")
    meta["_integrity"].pop("meta_sha256")
    return meta


def _assert_same_run(reference: str, resumed: str, monkeypatch, arrays: bool = True) -> None:
    """Final checkpoint (its arrays, or with `arrays` False, as a two-process checkpoint
    restores only onto two processes, the 32-bit checksum of every leaf saved with it),
    results.json and metrics.jsonl identical bit for bit; the partial epoch is gone once the
    final checkpoint is saved."""
    if arrays:
        monkeypatch.setattr(test_faults, "EPOCHS", EPOCHS)
        test_faults.assert_same_run(reference, resumed)
    else:
        assert _final_meta(resumed) == _final_meta(reference)
        assert test_faults.results_numbers(resumed) == test_faults.results_numbers(reference)
    with (
        open(os.path.join(reference, "metrics.jsonl")) as a,
        open(os.path.join(resumed, "metrics.jsonl")) as b,
    ):
        assert [json.loads(line) for line in a] == [json.loads(line) for line in b]
    assert not os.path.exists(os.path.join(resumed, "partial_epoch"))


def _stop_resume_compare(tmp_path, monkeypatch, args, cache, at_step=None):
    """Reference run, a run stopped by SIGTERM in epoch 2 (once `at_step` steps are done, or
    once epoch 1 is logged), resumed; checks and compares them."""
    reference, stopped = str(tmp_path / "reference"), str(tmp_path / "stopped")
    ref = test_faults.start(reference, open(tmp_path / "reference.log", "w"), cache, args)
    assert test_faults.finish(ref) == 0, read_log(tmp_path / "reference.log")[-3000:]
    proc = test_faults.start(stopped, open(tmp_path / "stopped.log", "w"), cache, args)
    if at_step is None:
        status = test_preemption.signal_after_first_epoch(proc, stopped)
    else:
        signal_at_step([proc], tmp_path / "stopped.log", at_step)
        status = test_faults.finish(proc)
    log = read_log(tmp_path / "stopped.log")
    assert status == 75, log[-3000:]
    assert "Traceback" not in log and "error:" not in log, log[-3000:]
    step, total = _stopped_line(log, stopped)
    if at_step is not None:
        assert step >= at_step - total
    assert not os.listdir(os.path.join(stopped, "checkpoints"))  # checkpoint_every=100
    assert os.listdir(os.path.join(stopped, "partial_epoch")) == [str(total + step)]

    resumed = test_faults.start(stopped, open(tmp_path / "resumed.log", "w"), cache, args)
    assert test_faults.finish(resumed) == 0, read_log(tmp_path / "resumed.log")[-3000:]
    assert f"resumed from step {step} of {total} in epoch 2" in read_log(tmp_path / "resumed.log")
    _assert_same_run(reference, stopped, monkeypatch)


def test_stepwise_epoch_stopped_and_resumed_equals_the_uninterrupted_one():
    """In process: an epoch stopped after step 3, resumed there from its state and the three
    steps' metrics (through the host, as a checkpoint holds them), ends with the states and
    metrics of the same epoch run through."""
    from exon_jax import experiment, parallel, train
    from tests.synthetic import small_mnist_config, synthetic_mnist

    config = small_mnist_config(1, labelled_per_class=2)
    config.train.batch_unlabelled, config.train.batch_labelled = 100, 10
    exp = experiment.build_experiment(config, synthetic_mnist(num_train=620, num_test=20))
    total = exp.settings.steps_per_epoch
    assert total == 6
    step = jax.jit(
        train.over_models(train.make_indexed_step(exp.spec.train_step), 1), donate_argnums=0
    )
    epoch = train.make_stepwise_epoch(step, exp.settings)
    hparams, data = experiment.sharded_hparams(exp), experiment.device_data(exp)
    key = experiment.epoch_key(exp.spec.data.seed, 3, exp.mesh)

    asked = []
    whole, metrics = epoch(
        experiment.init_states(exp), hparams, data, key, stop=lambda: asked.append(1) or False
    )
    assert len(asked) == total - 1  # never after the last step
    asked.clear()
    states, stopped = epoch(
        experiment.init_states(exp),
        hparams,
        data,
        key,
        stop=lambda: len(asked.append(1) or asked) == 3,
    )
    assert isinstance(stopped, train.StoppedEpoch) and stopped.steps == 3
    assert len(stopped.per_step) == 3 and int(states.step[0]) == 3
    earlier = [
        parallel.global_tree(row, parallel.model_sharded(exp.mesh))
        for row in parallel.to_host(stopped.per_step)
    ]
    resumed, resumed_metrics = epoch(states, hparams, data, key, start=3, earlier=earlier)
    for a, b in zip(
        jax.tree.leaves(parallel.to_host(whole)), jax.tree.leaves(parallel.to_host(resumed))
    ):
        assert a.tobytes() == b.tobytes()
    for name, value in parallel.to_host(metrics).items():
        assert value.tobytes() == np.asarray(resumed_metrics[name]).tobytes(), name
    with pytest.raises(ValueError, match="resuming at step 2 of 6 with 3 earlier"):
        epoch(resumed, hparams, data, key, start=2, earlier=earlier)


@pytest.mark.slow  # three main.py runs: 20-37 s on 2 loaded cores; in process: the test above
def test_sigterm_mid_epoch_saves_the_step_and_resumes_bit_identical(tmp_path, monkeypatch):
    _stop_resume_compare(tmp_path, monkeypatch, EXON_ARGS, "xla-step-preempt")


@pytest.mark.slow  # the revision's conv classifier: ~1 min of XLA:CPU compilation a run
def test_revision_sigterm_mid_epoch_resumes_bit_identical(tmp_path, monkeypatch):
    _stop_resume_compare(
        tmp_path, monkeypatch, REVISION_ARGS, "xla-step-preempt-revision", at_step=8 + 3
    )


@pytest.mark.slow  # a main.py run (signal infrastructure)
def test_second_signal_mid_epoch_exits_at_once(tmp_path):
    workdir = str(tmp_path / "run")
    proc = test_faults.start(
        workdir, open(tmp_path / "run.log", "w"), "xla-step-preempt", EXON_ARGS
    )
    status = test_preemption.signal_after_first_epoch(
        proc, workdir, (signal.SIGINT, signal.SIGINT), gap=0.0
    )
    log = read_log(tmp_path / "run.log")
    assert status == 128 + signal.SIGINT, log[-3000:]
    assert "second SIGINT: exiting at once, without saving" in log, log[-3000:]
    assert "Traceback" not in log
    assert not os.path.exists(os.path.join(workdir, "partial_epoch"))


@pytest.mark.slow  # three two-process runs
def test_sigterm_to_one_process_stops_both_at_one_step_and_resumes(tmp_path, monkeypatch):
    reference, workdir = str(tmp_path / "reference"), str(tmp_path / "run")
    logs = [tmp_path / f"reference{i}.log" for i in range(2)]
    for p, log in zip(start_pair(reference, logs, EXON_ARGS), logs):
        assert test_faults.finish(p) == 0, read_log(log)[-3000:]
    logs = [tmp_path / f"run{i}.log" for i in range(2)]
    processes = start_pair(workdir, logs, EXON_ARGS)
    signal_at_step(processes, logs[0], 100 + 5)  # 100 steps an epoch
    steps = []
    for p, log in zip(processes, logs):
        assert test_faults.finish(p) == 75, read_log(log)[-3000:]
        assert "Traceback" not in read_log(log), read_log(log)[-3000:]
        steps.append(_stopped_line(read_log(log), workdir))
    assert "stopped by a signal to another process" in read_log(logs[0])
    assert "stopped by SIGTERM" in read_log(logs[1])
    assert steps[0] == steps[1]
    step, total = steps[0]
    assert step >= 5
    assert os.listdir(os.path.join(workdir, "partial_epoch")) == [str(total + step)]
    logs = [tmp_path / f"resumed{i}.log" for i in range(2)]
    for p, log in zip(start_pair(workdir, logs, EXON_ARGS), logs):
        assert test_faults.finish(p) == 0, read_log(log)[-3000:]
    assert f"resumed from step {step} of {total} in epoch 2" in read_log(logs[0])
    _assert_same_run(reference, workdir, monkeypatch, arrays=False)


def test_a_partial_epoch_is_used_only_past_the_newest_epoch_checkpoint(
    tmp_path, monkeypatch, capsys
):
    """In process: stopped after step 3 of epoch 1 (partial epoch 0 + 3 steps), resumed to
    the end, the partial one is removed with the first epoch checkpoint; put back beside the
    finished run's checkpoints, an older partial epoch is ignored: the run ends as the
    uninterrupted one."""
    import shutil

    from exon_jax import training
    from exon_jax.ops import preemption
    from tests.synthetic import small_mnist_config, synthetic_mnist

    config = small_mnist_config(2, labelled_per_class=2)
    config.train.batch_unlabelled, config.train.batch_labelled = 100, 10
    config.train.epoch_loop = "python"
    data = synthetic_mnist(num_train=620, num_test=20)
    training.train_and_evaluate(config, str(tmp_path / "ref"), data, progress=False)
    reference = test_faults.results_numbers(str(tmp_path / "ref"))

    calls = []
    agreed = preemption.agreed
    monkeypatch.setattr(  # two setup safe points, then one call after each step
        preemption, "agreed", lambda requested: len(calls.append(1) or calls) == 2 + 3
    )
    workdir = str(tmp_path / "run")
    with pytest.raises(preemption.Preempted) as stopped:
        training.train_and_evaluate(config, workdir, data, progress=False)
    partial = os.path.join(workdir, "partial_epoch")
    assert str(stopped.value) == (
        f"stopped by a signal to another process at step 3 of 6 in epoch 1 of 2; saved in {partial}"
    )
    kept = str(tmp_path / "kept")
    shutil.copytree(partial, kept)
    monkeypatch.setattr(preemption, "agreed", agreed)
    capsys.readouterr()
    training.train_and_evaluate(config, workdir, data, progress=True)
    assert f"resumed from step 3 of 6 in epoch 1 in {partial}" in capsys.readouterr().out
    assert test_faults.results_numbers(workdir) == reference
    assert not os.path.exists(partial)

    shutil.copytree(kept, partial)  # epoch 0 + 3 steps, older than checkpoint 2
    training.train_and_evaluate(config, workdir, data, progress=True)
    out = capsys.readouterr().out
    assert "resumed from epoch 2" in out and "resumed from step" not in out, out
    assert test_faults.results_numbers(workdir) == reference
