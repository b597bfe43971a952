"""Faults of issue 23 that must end in one line naming the field, file or flag, before
anything is written where it should not be. Through the command line."""

import os

from tests.test_cli import assert_one_line, run_main

TINY = ["--config=configs/mnist.py:tiny", "--config.analysis.figures=False"]


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
