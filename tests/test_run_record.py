"""A run keeps what it was trained with: config, data identity, exact priors; load_run.

Small slices of the real MNIST, 1-2 epochs each: seconds per test.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from exon_jax import configuration, data as data_lib, saved_run, training
from exon_jax.ops import run_record
from tests.synthetic import mnist_slice, small_mnist_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST_NPZ = os.path.join(ROOT, "data", "mnist", "mnist.npz")
pytestmark = pytest.mark.skipif(
    not os.path.exists(MNIST_NPZ), reason="run `python scripts/fetch_mnist.py` first"
)


@pytest.fixture(scope="module")
def small_mnist():
    return mnist_slice(3000, 500, "mnist_slice")


def tiny_config(epochs=1):
    return small_mnist_config(epochs, labelled_per_class=20)


@pytest.fixture(scope="module")
def file_prior_run(tmp_path_factory, small_mnist):
    """One epoch with a prior read from a file; the npz data set on disk for the CLI."""
    root = tmp_path_factory.mktemp("file_prior")
    data_dir = root / "data" / "mnist_slice"
    data_dir.mkdir(parents=True)
    np.savez(
        data_dir / "mnist_slice.npz",
        train_images=small_mnist.train.images,
        train_labels=small_mnist.train.labels,
        test_images=small_mnist.test.images,
        test_labels=small_mnist.test.labels,
    )
    prior_path = root / "prior.json"
    shutil.copy(os.path.join(ROOT, "configs", "priors", "mnist_4_9_apart.json"), prior_path)
    config = tiny_config()
    config.data.name = "mnist_slice"
    config.data.source = "files"
    config.data.dir = str(root / "data")
    config.prior.layout = "file"
    config.prior.file = str(prior_path)
    workdir = str(root / "run")
    results = training.train_and_evaluate(config, workdir, progress=False)
    return workdir, results, prior_path


@pytest.mark.slow  # a second process
def test_file_prior_evaluated_in_a_fresh_process_gives_identical_numbers(file_prior_run):
    """evaluate uses the stored prior: the prior file may even change after training."""
    workdir, trained, prior_path = file_prior_run
    prior_path.write_text(json.dumps({"means": [[0.0, 0.0]] * 10, "variances": 1.0}))
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "main.py"), "--mode=evaluate", f"--workdir={workdir}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    with open(os.path.join(workdir, "results.json")) as f:
        evaluated = json.load(f)
    for key in ("kl", "classification_error", "negative_ssim", "centre_distance_sd"):
        assert evaluated["models"][0][key] == trained["models"][0][key]
    assert evaluated["dataset"] == "mnist_slice"


def test_checkpoint_and_record_hold_the_exact_prior_and_data_identity(file_prior_run):
    workdir, _, _ = file_prior_run
    with open(os.path.join(workdir, "record.json")) as f:
        record = json.load(f)
    with open(os.path.join(ROOT, "configs", "priors", "mnist_4_9_apart.json")) as f:
        design = json.load(f)
    np.testing.assert_array_equal(
        np.asarray(record["priors"][0]["means"], np.float32),
        np.asarray(design["means"], np.float32),
    )
    assert record["config"]["prior"]["layout"] == "file"
    assert record["dataset"]["name"] == "mnist_slice"


def test_changed_training_field_is_refused_before_anything_is_written(file_prior_run):
    workdir, _, prior_path = file_prior_run
    before = {
        name: open(os.path.join(workdir, name), "rb").read()
        for name in ("config.json", "metrics.jsonl")
    }
    with open(os.path.join(workdir, "config.json")) as f:
        stored = json.load(f)
    config = run_record.stored_config(workdir)
    config.loss.lambda1 = 10.0
    config.model.hidden = [100, 100]
    with pytest.raises(configuration.ConfigError) as error:
        training.train_and_evaluate(config, workdir, progress=False)
    message = str(error.value)
    assert "loss.lambda1: 100.0 -> 10.0" in message and "model.hidden" in message
    for name, content in before.items():
        assert open(os.path.join(workdir, name), "rb").read() == content
    assert stored["loss"]["lambda1"] == 100.0


def test_evaluate_accepts_only_run_option_overrides(file_prior_run):
    workdir, _, _ = file_prior_run
    with pytest.raises(configuration.ConfigError, match="loss.lambda1: cannot be overridden"):
        saved_run.evaluate(workdir, {"loss.lambda1": 1.0})
    results = saved_run.evaluate(workdir, {"data.max_test": 100})
    assert results["models"][0]["classification_error"] * 100 == pytest.approx(
        round(results["models"][0]["classification_error"] * 100)
    )


@pytest.mark.slow  # ~11 s loaded: two more runs
def test_longer_training_resumes_without_duplicate_metric_rows(small_mnist, tmp_path):
    """epochs 2 -> 3 is allowed and recorded; a lost last checkpoint re-trains its epoch once."""
    config = tiny_config(epochs=2)
    workdir = str(tmp_path)
    training.train_and_evaluate(config, workdir, small_mnist, progress=False)
    shutil.rmtree(os.path.join(workdir, "checkpoints", "2"))  # as if killed before saving 2
    config.train.epochs = 3
    training.train_and_evaluate(config, workdir, small_mnist, progress=False)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        epochs = [json.loads(line)["epoch"] for line in f]
    assert epochs == [1, 2, 3]
    with open(os.path.join(workdir, "resumes.jsonl")) as f:
        resume = json.loads(f.read().splitlines()[-1])
    assert resume["from_epoch"] == 1 and resume["changed"]["train.epochs"] == [2, 3]
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["train"]["epochs"] == 2  # written once, by the first run


def test_data_passed_from_python_is_recorded(small_mnist, tmp_path):
    """evaluate without the arrays says which data set it needs; other arrays are refused."""
    workdir = str(tmp_path)
    config = tiny_config()
    config.data.name = "mydigits"
    training.train_and_evaluate(config, workdir, small_mnist, progress=False)
    with pytest.raises(run_record.DataMismatch, match="trained on data set 'mnist_slice'"):
        saved_run.evaluate(workdir)
    other = data_lib.ImageDataset(
        small_mnist.train,
        data_lib.ImageSplit(
            small_mnist.test.images[::-1].copy(), small_mnist.test.labels[::-1].copy()
        ),
        "mydigits",
        small_mnist.class_names,
    )
    with pytest.raises(run_record.DataMismatch, match="differs"):
        saved_run.evaluate(workdir, dataset=other)
    assert saved_run.evaluate(workdir, dataset=small_mnist)["dataset"] == "mnist_slice"


def _readme_snippet():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    block = re.search(r"<!-- api-snippet:start -->\s*```python\n(.*?)```", readme, re.S)
    assert block, "README.md lost its Python API snippet"
    return block.group(1)


def test_readme_python_snippet_runs(file_prior_run, small_mnist, monkeypatch):
    """Exactly the README's snippet, on a trained workdir (its path substituted)."""
    workdir, trained, _ = file_prior_run
    code = _readme_snippet().replace('"workdirs/mnist"', repr(workdir))
    monkeypatch.chdir(ROOT)
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    run = scope["run"]
    probs, means, logvars = run.encode(small_mnist.test.images[:5])
    assert probs.shape == (5, 10) and means.shape == logvars.shape == (5, 10, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    floats = run.encode(small_mnist.test.images[:5].astype(np.float32) / 255.0)
    np.testing.assert_allclose(floats[0], probs, rtol=1e-5, atol=1e-6)
    errors = np.mean(run.classify(small_mnist.test.images) != small_mnist.test.labels)
    assert errors == pytest.approx(trained["models"][0]["classification_error"], abs=1e-6)
    drawn = run.sample(jax.random.key(0), [4, 9])
    assert drawn.shape == (2, 28, 28, 1) and 0.0 <= drawn.min() and drawn.max() <= 1.0
    np.testing.assert_array_equal(np.asarray(run.prior.means), np.asarray(scope["run"].prior.means))


def test_curves_and_tensorboard_of_a_run(file_prior_run, tmp_path):
    """experiments/curves.py draws metrics.jsonl (nulls as gaps); TensorBoard has the run's
    scalars and images under tensorboard/<point>/."""
    from experiments import curves

    workdir, _, _ = file_prior_run
    read = curves.read_curves(workdir)
    epochs, losses = read["train/loss"]["model"]
    assert epochs == [1] and np.isfinite(losses).all()
    path = curves.main(workdir, out=str(tmp_path))
    assert os.path.getsize(path) > 0 and os.path.exists(path[:-4] + ".pdf")
    directory = os.path.join(workdir, "tensorboard", "model")
    tags = {"scalars": set(), "images": set()}
    for name in os.listdir(directory):
        for event in _read_events(os.path.join(directory, name)):
            for value in event.summary.value:
                tags["images" if value.HasField("image") else "scalars"].add(value.tag)
    assert "eval/kl" in tags["scalars"] and "train/loss" in tags["scalars"]
    assert {"reconstructions", "decoded_probe"} <= tags["images"]


def _read_events(path):
    """Events of a TensorBoard file: records of (u64 length, u32 crc, data, u32 crc)."""
    import struct
    from tensorboardX.proto import event_pb2

    with open(path, "rb") as f:
        blob = f.read()
    offset = 0
    while offset + 12 <= len(blob):
        (length,) = struct.unpack("<Q", blob[offset : offset + 8])
        yield event_pb2.Event.FromString(blob[offset + 12 : offset + 12 + length])
        offset += 12 + length + 4


def test_code_identity_names_this_checkouts_commit_and_hashes_the_whole_package(
    tmp_path, monkeypatch
):
    """The package's own git commit (not None: the record module sits in exon_jax/ops/, and
    the identity is of exon_jax/ as a whole), and a source hash that a change to a module
    outside ops/ changes, while an unchanged copy of the package hashes the same."""
    import shutil
    import subprocess

    from exon_jax.ops import run_record

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    head = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    code = run_record.code_identity()
    assert code["git_commit"] == head.stdout.strip()
    copy = tmp_path / "exon_jax"
    shutil.copytree(
        os.path.join(root, "exon_jax"), copy, ignore=shutil.ignore_patterns("__pycache__")
    )
    monkeypatch.setattr(run_record, "_PACKAGE_DIR", str(copy))
    identity = run_record.code_identity.__wrapped__  # cached per process; uncached here
    assert identity()["source_sha256"] == code["source_sha256"]
    with open(copy / "priors.py", "a") as f:
        f.write("\n# changed\n")
    assert identity()["source_sha256"] != code["source_sha256"]
