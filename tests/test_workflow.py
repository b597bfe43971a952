"""Workflow (issue 22.4): step progress, validation every evaluation and the best checkpoint,
resuming from the stored config, TensorBoard hyper-parameters."""

import json
import math
import os
import re

import jax.numpy as jnp
import numpy as np
import pytest

import exon_jax
from exon_jax import configuration, train, training
from exon_jax import data as data_lib
from tests.synthetic import mnist_slice, small_mnist_config, synthetic_mnist

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- (a) a step-level progress bar ---------------------------------------------------------


def test_stepwise_epoch_reports_every_step():
    """`make_stepwise_epoch(progress=...)` is called once per step, in order, with that
    step's (not yet synchronised) metrics."""
    settings = train.TrainSettings(
        batch_unlabelled=10, batch_labelled=5, num_unlabelled=95, num_labelled=20
    )
    steps = math.ceil(95 / 10)  # one pass over the unlabelled set

    def step(state, hparams, data, unlabelled, labelled):
        return state + 1, {"loss": jnp.sum(unlabelled).astype(jnp.float32)}

    seen = []
    epoch = train.make_stepwise_epoch(
        step, settings, progress=lambda i, metrics: seen.append((i, metrics["loss"]))
    )
    import jax

    state, metrics = epoch(jnp.zeros(()), None, None, jax.random.key(0))
    assert [i for i, _ in seen] == list(range(1, steps + 1))
    assert int(state) == steps
    np.testing.assert_allclose(float(metrics["loss"]), np.mean([float(m) for _, m in seen]))


def _tiny(epochs, **train_fields):
    config = small_mnist_config(epochs, labelled_per_class=20)
    config.data.name = "synthetic"
    config.data.max_unlabelled = 400
    config.train.batch_unlabelled = 100
    config.train.batch_labelled = 50
    for name, value in train_fields.items():
        config.train[name] = value
    return config


def test_long_epochs_show_step_progress(tmp_path, capsys):
    """A stepwise epoch (train.epoch_loop='python') moves the bar step by step: the bar
    counts steps (400 unlabelled / 100 a batch = 4 a epoch, 2 epochs), not epochs."""
    config = _tiny(2, epoch_loop="python")
    training.run(config, str(tmp_path / "w"), synthetic_mnist(1200, 200), progress=True)
    err = capsys.readouterr().err
    assert re.search(r"\b8/8 \[.*step", err), err[-2000:]
    assert re.search(r"epoch 1/2: .*\b[1-3]/8 ", err), err[-2000:]  # inside the first epoch
    assert "0/2" not in err


# --- (b) validation every evaluation, the best-on-validation checkpoint ---------------------

VALIDATION = 200


@pytest.fixture(scope="module")
def validated_run(tmp_path_factory):
    """3 epochs on 1 200 real MNIST images, 200 of them held out for validation, the best
    checkpoint kept (checkpoints keep only the newest: max_checkpoints 1)."""
    dataset = mnist_slice(1400, 200)
    config = small_mnist_config(3, labelled_per_class=10)
    config.data.validation = VALIDATION
    config.train.batch_unlabelled = 200
    config.train.batch_labelled = 50
    config.train.max_checkpoints = 1
    config.train.keep_best = True
    workdir = str(tmp_path_factory.mktemp("validated") / "run")
    training.run(config, workdir, dataset, progress=False)
    _, validation = data_lib.split_validation(dataset.train, VALIDATION, config.data.seed)
    return workdir, validation


def _rows(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def _error(run, split) -> float:
    return float(np.mean(run.classify(split.images) != split.labels))


def test_validation_error_every_evaluation(validated_run):
    """Every evaluated epoch's row holds the validation error, equal to the error of that
    epoch's model classifying the held-out images itself (the newest checkpoint: epoch 3)."""
    workdir, validation = validated_run
    rows = [r for r in _rows(workdir) if "eval/classification_error" in r]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert all("eval/validation_error" in r for r in rows), rows[0].keys()
    latest = exon_jax.load_run(workdir)
    assert latest.epoch == 3
    assert rows[-1]["eval/validation_error"] == pytest.approx(_error(latest, validation), abs=1e-6)


def test_validation_error_in_tensorboard(validated_run):
    from tensorboard.backend.event_processing import event_accumulator

    workdir, _ = validated_run
    events = event_accumulator.EventAccumulator(os.path.join(workdir, "tensorboard", "model"))
    events.Reload()
    steps = [e.step for e in events.Scalars("eval/validation_error")]
    assert steps == [1, 2, 3]
    by_epoch = {r["epoch"]: r["eval/validation_error"] for r in _rows(workdir)}
    for e in events.Scalars("eval/validation_error"):
        assert e.value == pytest.approx(by_epoch[e.step], abs=1e-6)


def test_best_checkpoint_is_the_lowest_validation_error(validated_run):
    """load_run(which="best") restores the epoch of the lowest validation error (the first
    of equals), and that model's own error on the held-out images is that lowest error."""
    workdir, validation = validated_run
    errors = {r["epoch"]: r["eval/validation_error"] for r in _rows(workdir)}
    best_epoch = min(errors, key=lambda e: (errors[e], e))
    best = exon_jax.load_run(workdir, which="best")
    assert best.epoch == best_epoch
    assert _error(best, validation) == pytest.approx(errors[best_epoch], abs=1e-6)
    assert _error(best, validation) <= _error(exon_jax.load_run(workdir), validation)


def test_keep_best_needs_a_validation_set(tmp_path):
    config = _tiny(1)
    config.train.keep_best = True
    with pytest.raises(configuration.ConfigError, match="config.train.keep_best.*data.validation"):
        training.run(config, str(tmp_path / "w"), synthetic_mnist(1200, 200), progress=False)
    del config.train["keep_best"]  # a ConfigDict keeps a field's type: a new field
    config.train.keep_best = "yes"
    config.data.validation = 100
    with pytest.raises(configuration.ConfigError, match="config.train.keep_best"):
        training.run(config, str(tmp_path / "w"), synthetic_mnist(1200, 200), progress=False)
    assert not os.path.exists(tmp_path / "w")


def test_load_run_best_without_best_checkpoint(validated_run, tmp_path):
    """A run trained without train.keep_best has no best checkpoint: one clear error."""
    config = _tiny(1)
    training.run(config, str(tmp_path / "w"), synthetic_mnist(1200, 200), progress=False)
    with pytest.raises(ValueError, match="train.keep_best"):
        exon_jax.load_run(str(tmp_path / "w"), which="best")
    with pytest.raises(ValueError, match="which"):
        exon_jax.load_run(validated_run[0], which="newest")


@pytest.mark.slow  # ~12 s loaded: two runs of its own
def test_best_checkpoint_survives_a_resume(tmp_path):
    """A resumed run keeps comparing with the best before the restart: the best is the
    lowest validation error over both runs' epochs (the first of equals)."""
    workdir = str(tmp_path / "w")
    dataset = synthetic_mnist(1200, 200)
    for epochs in (1, 2):
        config = _tiny(epochs, keep_best=True)
        config.data.validation = 100
        training.run(config, workdir, dataset, progress=False)
    errors = {r["epoch"]: r["eval/validation_error"] for r in _rows(workdir)}
    assert sorted(errors) == [1, 2]
    assert exon_jax.load_run(workdir, which="best").epoch == min(
        errors, key=lambda e: (errors[e], e)
    )


# --- (c) main.py --workdir=W alone resumes from the run's stored config --------------------


def _main(*args):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "main.py"), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    return out.returncode, out.stdout, out.stderr


def _trained_tiny_run(workdir):
    """configs/mnist.py:tiny with non-default training fields, 1 epoch, trained in process
    (the data: data/mnist, as main.py finds it)."""
    from configs import mnist

    config = mnist.get_config("tiny")
    config.train.epochs = 1
    config.data.max_unlabelled = 500
    config.loss.lambda1 = 10.0
    config.analysis.figures = False
    cwd = os.getcwd()
    os.chdir(ROOT)  # data.dir is relative to the repository, as for main.py
    try:
        training.run(config, workdir, progress=False)
    finally:
        os.chdir(cwd)
    with open(os.path.join(workdir, "config.json")) as f:
        return f.read()


@pytest.mark.slow  # main.py starts
def test_workdir_alone_resumes_from_its_stored_config(tmp_path):
    """A run trained with non-default training fields is resumed by `--workdir=W` and
    `--config.train.epochs` alone (no --config): it trains epoch 2 with the stored fields."""
    workdir = str(tmp_path / "run")
    stored = _trained_tiny_run(workdir)
    rc, out, err = _main(f"--workdir={workdir}", "--config.train.epochs=2")
    assert rc == 0, err[-2000:]
    assert "resumed from epoch 1" in out
    assert sorted({r["epoch"] for r in _rows(workdir)}) == [1, 2]
    with open(os.path.join(workdir, "resumes.jsonl")) as f:
        resumes = [json.loads(line) for line in f]
    assert [r["from_epoch"] for r in resumes] == [1]
    assert resumes[0]["changed"] == {"train.epochs": [1, 2]}
    with open(os.path.join(workdir, "config.json")) as f:
        assert f.read() == stored  # the first run's config is kept
    assert not os.path.exists(os.path.join(workdir, "figures"))  # analysis.figures=False kept


@pytest.mark.slow  # a main.py start
def test_workdir_alone_refuses_a_training_field(tmp_path):
    """Without --config, a training field given on the command line is refused in one line
    naming it, nothing trained."""
    workdir = str(tmp_path / "run")
    _trained_tiny_run(workdir)
    rc, out, err = _main(f"--workdir={workdir}", "--config.loss.lambda1=5")
    assert rc == 1 and "Traceback" not in err, err[-2000:]
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "config.loss.lambda1" in lines[0], err
    assert sorted({r["epoch"] for r in _rows(workdir)}) == [1]


# --- (d) TensorBoard: installed by the set-up, hyper-parameters in its HParams view --------


def test_tensorboard_is_pinned_and_installed():
    """requirements.txt and pyproject.toml pin tensorboard, the version installed here, and
    its command (the README's `tensorboard --logdir ...`) exists beside this Python."""
    import sys
    from importlib import metadata

    version = metadata.version("tensorboard")
    with open(os.path.join(ROOT, "requirements.txt")) as f:
        assert f"tensorboard=={version}" in f.read().split()
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        assert f'"tensorboard=={version}"' in f.read()
    assert os.path.exists(os.path.join(os.path.dirname(sys.executable), "tensorboard"))


def test_ml_dtypes_is_the_pinned_version():
    """requirements.txt and pyproject.toml pin ml_dtypes (jax's dtypes) to the version
    installed here: 0.7.0's extension took 0.47 s to load on the 2-core Xeon, a third of
    every run's start-up (bench/results/*/overhead.json, before/after)."""
    from importlib import metadata

    version = metadata.version("ml_dtypes")
    with open(os.path.join(ROOT, "requirements.txt")) as f:
        assert f"ml_dtypes=={version}" in f.read().split()
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        assert f'"ml_dtypes=={version}"' in f.read()


def test_grid_points_compare_by_lambda_in_hparams(tmp_path):
    """Each grid point's TensorBoard run carries its own λ1 in the HParams plugin's session
    (read with TensorBoard's own reader), and the experiment names the eval metrics."""
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    config = _tiny(1)
    config.sweep.lambda1 = (3.0, 30.0)
    config.loss.lambda2 = 0.5
    training.run(config, str(tmp_path / "w"), synthetic_mnist(1200, 200), progress=False)
    for lambda1 in (3.0, 30.0):
        events = event_accumulator.EventAccumulator(
            str(tmp_path / "w" / "tensorboard" / f"lambda1={lambda1:g}")
        )
        events.Reload()
        content = events.PluginTagToContent("hparams")
        data = {}
        for tag, raw in content.items():
            data[tag] = plugin_data_pb2.HParamsPluginData.FromString(raw)
        session = data["_hparams_/session_start_info"].session_start_info
        assert session.hparams["loss.lambda1"].number_value == lambda1
        assert session.hparams["loss.lambda2"].number_value == 0.5
        assert session.hparams["prior.layout"].string_value == "circle"
        metrics = {m.name.tag for m in data["_hparams_/experiment"].experiment.metric_infos}
        assert "eval/classification_error" in metrics
