"""Faults of issue 23 that must end in one line naming the field, file or flag, before
anything is written where it should not be. Through the command line."""

import json
import os

import pytest

from tests.test_cli import assert_one_line, run_main

TINY = ["--config=configs/mnist.py:tiny", "--config.analysis.figures=False"]


@pytest.mark.slow  # a main.py run that trains; in process: test_experiment.py
def test_exploding_parameters_are_never_a_good_checkpoint(tmp_path):
    """lr = 1e30: the loss stays finite for an epoch while |params| reach ~1e30 (evaluated,
    KL is NaN). That state must not be saved as the "last good" checkpoint."""
    rc, err = run_main(
        *TINY,
        f"--workdir={tmp_path}",
        "--config.data.max_unlabelled=500",
        "--config.optimizer.learning_rate=1e30",
        "--config.train.epochs=3",
    )
    assert_one_line(rc, err, "parameters out of range (largest |parameter| ")
    assert "in epoch 1 for model(s) ['model']; no checkpoint was written yet" in err, err
    assert not [n for n in os.listdir(tmp_path / "checkpoints") if n.isdigit()]


@pytest.mark.slow  # a main.py start; test_cli keeps one in the default suite
def test_typo_beside_a_valid_override_keeps_the_hint(tmp_path):
    rc, err = run_main(
        *TINY,
        f"--workdir={tmp_path / 'w'}",
        "--config.train.epoch=3",
        "--config.train.batch_labelled=50",
    )
    assert_one_line(
        rc, err, "no such config field: --config.train.epoch (did you mean --config.train.epochs?)"
    )
    assert "batch_labelled" not in err


@pytest.mark.parametrize(
    "override, expected",
    [
        ("grid_size=0", "config.analysis.grid_size: must be an integer >= 2, got 0"),
        ("label_map_size=1", "config.analysis.label_map_size: must be an integer >= 2, got 1"),
        ("grid_extent=-1.0", "config.analysis.grid_extent: must be "),
        ("activation_threshold=-1.0", "config.analysis.activation_threshold: must be a finite"),
    ],
)
@pytest.mark.slow  # four main.py starts
def test_analysis_fields_are_checked_before_the_workdir_is_written(tmp_path, override, expected):
    rc, err = run_main(*TINY, f"--workdir={tmp_path / 'w'}", f"--config.analysis.{override}")
    assert_one_line(rc, err, expected)
    assert not os.path.exists(tmp_path / "w")


@pytest.mark.slow  # a main.py start
def test_distributed_outside_a_cluster_is_one_line(tmp_path):
    rc, err = run_main(*TINY, f"--workdir={tmp_path / 'w'}", "--distributed")
    assert_one_line(rc, err, "jax.distributed cannot start: ")
    assert "no cluster detected" in err


@pytest.mark.slow  # a main.py start; the default suite keeps --distributed
def test_num_processes_alone_is_one_line(tmp_path):
    rc, err = run_main(*TINY, f"--workdir={tmp_path / 'w'}", "--num_processes=2")
    assert_one_line(rc, err, "--num_processes=2 needs --coordinator_address and --process_id too")


@pytest.mark.slow  # a main.py start
def test_a_workdir_that_is_a_file_is_named(tmp_path):
    path = tmp_path / "file"
    path.write_text("not a run")
    rc, err = run_main(*TINY, f"--workdir={path}")
    assert_one_line(rc, err, f"--workdir={path} is a file, not a directory")


@pytest.mark.slow  # a main.py start; test_cli.py evaluates an empty workdir
def test_evaluate_leaves_a_foreign_directory_alone(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    rc, err = run_main("--mode=evaluate", f"--workdir={tmp_path}")
    assert_one_line(rc, err, "config.json not found")
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]  # no error.log


@pytest.mark.slow  # two main.py starts; the refusal in process: test_priors.py
def test_prior_variance_too_small_names_the_prior(tmp_path):
    rc, err = run_main(*TINY, f"--workdir={tmp_path / 'w'}", "--config.prior.variance=1e-30")
    assert_one_line(rc, err, "config.prior.variance: must be >= 1e-06, got 1e-30")
    prior = tmp_path / "prior.json"
    means = [[8.0 * k, 0.0] for k in range(10)]
    prior.write_text(json.dumps({"means": means, "variances": 1e-30}))
    rc, err = run_main(
        *TINY,
        f"--workdir={tmp_path / 'w'}",
        "--config.prior.layout=file",
        f"--config.prior.file={prior}",
    )
    assert_one_line(rc, err, "variances must be >= 1e-06, got 1e-30")
    assert f"config.prior.file ({prior})" in err or str(prior) in err, err


@pytest.mark.slow  # a main.py start
def test_tfds_without_network_fails_fast(tmp_path):
    import subprocess
    import sys
    import time

    from exon_jax import data as data_lib
    from tests.test_cli import ROOT

    if data_lib.network_unreachable(timeout=3.0) is None:
        pytest.skip("the network is reachable here: tfds would download")
    started = time.monotonic()
    out = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "main.py"),
            *TINY,
            f"--workdir={tmp_path / 'w'}",
            "--config.data.source=tfds",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env=dict(os.environ, TFDS_DATA_DIR=str(tmp_path / "tfds")),
    )
    assert time.monotonic() - started < 60  # was 212 s of download retries
    assert_one_line(
        out.returncode,
        out.stderr.strip(),
        "tfds could not serve 'mnist': it is not prepared in ",
    )
    assert "it cannot be downloaded: the network is unreachable (storage.googleapis.com:443" in (
        out.stderr
    )
    assert "Retrying" not in out.stderr
