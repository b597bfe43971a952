"""A run's identity survives a missing or damaged config.json / record.json: each is rebuilt
from the newest checkpoint whose meta verifies (every checkpoint keeps the full config,
data identity and priors), or refused in one line naming the file; a resume never accepts
a config it cannot compare. Results say what they are: an evaluation on a subset writes
its own file, and every run records the library version and git commit. Through the
command line, on the tiny MNIST config.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib

import pytest

from exon_jax.ops import run_record
from tests import test_faults
from tests.test_multiprocess import MNIST_NPZ

ROOT = test_faults.ROOT
pytestmark = [
    pytest.mark.skipif(not os.path.exists(MNIST_NPZ), reason="no data/mnist/mnist.npz"),
    pytest.mark.slow,  # every test reads a run that main.py trains in a subprocess (~10 s each)
]
ARGS = [a for a in test_faults.ARGS if "epochs" not in a]


def main(workdir, *args):
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env.update(JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "main.py"),
            f"--workdir={workdir}",
            f"--compilation_cache={test_faults.cache_dir('xla-identity')}",
            *args,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=test_faults.RUN_TIMEOUT,
    )
    return out.returncode, out.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two epochs, a checkpoint after each."""
    workdir = str(tmp_path_factory.mktemp("identity") / "run")
    rc, err = main(workdir, *ARGS, "--config.train.epochs=2")
    assert rc == 0, err[-3000:]
    return workdir


def copy(trained, tmp_path):
    target = str(tmp_path / "copy")
    shutil.copytree(trained, target)
    return target


def load(path):
    with open(path) as f:
        return json.load(f)


def truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def error_lines(err):
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_resume_without_config_json_is_compared_with_the_checkpoints_config(trained, tmp_path):
    workdir = copy(trained, tmp_path)
    os.remove(os.path.join(workdir, "config.json"))
    rc, err = main(workdir, *ARGS, "--config.train.epochs=3", "--config.loss.lambda1=1")
    assert rc == 1 and "Traceback" not in err, err[-3000:]
    assert f"note: {workdir}/config.json is missing: rebuilt from checkpoint 2" in err, err
    [line] = error_lines(err)
    assert "changed training fields: loss.lambda1: 100.0 -> 1.0" in line, line
    assert not os.path.exists(os.path.join(workdir, "config.json"))  # a refusal writes nothing


def test_no_comparable_config_is_refused_naming_the_file(trained, tmp_path):
    workdir = copy(trained, tmp_path)
    os.remove(os.path.join(workdir, "config.json"))
    os.remove(os.path.join(workdir, "record.json"))
    for epoch in ("1", "2"):
        truncate(os.path.join(workdir, "checkpoints", epoch, "meta", "metadata"))
    rc, err = main(workdir, *ARGS, "--config.train.epochs=3")
    assert rc == 1 and "Traceback" not in err, err[-3000:]
    assert error_lines(err) == [
        f"error: {workdir}/config.json is missing and no checkpoint in {workdir}/checkpoints "
        "keeps a readable config: the run's config cannot be compared (restore the file, or "
        f"use a new --workdir) (traceback in {workdir}/error.log)"
    ], err


def test_truncated_record_json_at_evaluate(trained, tmp_path):
    workdir = copy(trained, tmp_path)
    truncate(os.path.join(workdir, "record.json"))
    rc, err = main(workdir, "--mode=evaluate")
    assert rc == 0 and "Traceback" not in err, err[-3000:]
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert notes == [f"note: {workdir}/record.json is damaged: rebuilt from checkpoint 2"], err
    assert test_faults.results_numbers(workdir) == test_faults.results_numbers(trained)
    # with no checkpoint to rebuild it from: one line naming the file
    shutil.rmtree(os.path.join(workdir, "checkpoints"))
    rc, err = main(workdir, "--mode=evaluate")
    assert rc == 1 and "Traceback" not in err, err[-3000:]
    [line] = error_lines(err)
    assert line.startswith(f"error: {workdir}/record.json is damaged (Unterminated string"), line


@pytest.mark.slow  # a third epoch trained: ~20 s
def test_truncated_record_and_missing_config_are_rebuilt_at_a_training_resume(trained, tmp_path):
    workdir = copy(trained, tmp_path)
    truncate(os.path.join(workdir, "record.json"))
    os.remove(os.path.join(workdir, "config.json"))
    rc, err = main(workdir, *ARGS, "--config.train.epochs=3")
    assert rc == 0, err[-3000:]
    assert f"note: {workdir}/record.json is damaged: rebuilt from checkpoint 2" in err, err
    assert f"note: {workdir}/config.json is missing: rebuilt from checkpoint 2" in err, err
    assert load(os.path.join(workdir, "config.json")) == load(os.path.join(trained, "config.json"))
    rebuilt, original = (load(os.path.join(w, "record.json")) for w in (workdir, trained))
    assert {k: rebuilt[k] for k in run_record.RECORD_FIELDS} == {
        k: original[k] for k in run_record.RECORD_FIELDS
    }
    assert os.path.exists(os.path.join(workdir, "record.json.damaged"))


def test_evaluate_on_a_subset_writes_its_own_results_file(trained, tmp_path):
    workdir = copy(trained, tmp_path)
    with open(os.path.join(workdir, "results.json"), "rb") as f:
        before = f.read()
    rc, err = main(workdir, "--mode=evaluate", "--config.data.max_test=100")
    assert rc == 0 and "Traceback" not in err, err[-3000:]
    with open(os.path.join(workdir, "results.json"), "rb") as f:
        assert f.read() == before  # the full-test numbers stay
    subset = load(os.path.join(workdir, "results_data.max_test=100.json"))
    assert subset["test_size"] == 100 and subset["overrides"] == {"data.max_test": 100}
    full = load(os.path.join(workdir, "results.json"))
    assert full["test_size"] == 200 and full["overrides"] == {}  # test_faults.ARGS: max_test=200


def test_the_run_records_the_library_version_and_commit(trained):
    import exon_jax

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        version = tomllib.load(f)["project"]["version"]
    assert exon_jax.__version__ == version
    assert os.path.exists(os.path.join(ROOT, "exon_jax", "py.typed"))
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        assert "py.typed" in tomllib.load(f)["tool"]["setuptools"]["package-data"]["exon_jax"]
    for name in ("record.json", "results.json"):
        code = load(os.path.join(trained, name))["code"]
        assert code["exon_jax_version"] == version
        assert re.fullmatch("[0-9a-f]{40}", code["git_commit"]), code
        known = subprocess.run(["git", "-C", ROOT, "cat-file", "-e", code["git_commit"]])
        assert known.returncode == 0, code  # a commit of this repository
        assert isinstance(code["git_dirty"], bool)


def test_a_diverged_checkpoint_is_not_evaluated(trained, tmp_path):
    """A checkpoint whose parameters reached ~1e29 (saved by a version without the
    magnitude check) is refused at evaluate in one line; results.json stays."""
    import jax

    from exon_jax import saved_run
    from exon_jax.ops import checkpoints

    workdir = copy(trained, tmp_path)
    _, states, meta = saved_run.restore_run(workdir)
    blown = states.replace(params=jax.tree.map(lambda x: x * 1e30, states.params))
    manager = checkpoints.make_manager(os.path.join(workdir, "checkpoints"))
    try:
        checkpoints.save(manager, 3, blown, {**meta, "epoch": 3})  # finite: accepted
    finally:
        manager.close()
    with open(os.path.join(workdir, "results.json"), "rb") as f:
        before = f.read()
    rc, err = main(workdir, "--mode=evaluate")
    assert rc == 1 and "Traceback" not in err, err[-3000:]
    [line] = error_lines(err)
    assert line.startswith(
        f"error: checkpoint 3 in {workdir}/checkpoints is not a sound state: parameters out "
        "of range (largest |parameter| "
    ), line
    with open(os.path.join(workdir, "results.json"), "rb") as f:
        assert f.read() == before
