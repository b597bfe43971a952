"""The revision's official batch pipeline (their `train` in mnist/main.py): epoch length,
image pool, labelled batches of 32, 32, 32, 4 restarted each pass; and the method registry."""

import dataclasses

import jax
import numpy as np
import pytest

from configs import mnist as mnist_config
from configs import mnist100_revision
from exon_jax import batching, configuration, experiment, methods, train
from tests.synthetic import synthetic_mnist


def test_labelled_batch_sizes_one_pass_with_a_short_last_batch():
    # 100 labels in batches of 32 with drop_remainder=False: 3 full batches and one of 4.
    assert batching.labelled_batch_sizes(100, 32, restart=True) == (32, 32, 32, 4)
    assert batching.labelled_batch_sizes(96, 32, restart=True) == (32, 32, 32)
    assert batching.labelled_batch_sizes(100, 32, restart=False) == (32,)


@pytest.mark.parametrize("steps", [8, 10])  # whole cycles of 4, and two steps more
def test_restarting_labelled_batches_are_fresh_passes(steps):
    """Each cycle of k steps, cut to its batch sizes, is one permutation of the labelled set
    (every label once); cycles are shuffled independently; unlabelled rows draw without
    replacement from the pool."""
    num_pool, num_labelled, bu, bl = 500, 10, 40, 3
    unlabelled, labelled = jax.jit(batching.epoch_batch_indices, static_argnums=(1, 2, 3, 4, 5, 6))(
        jax.random.key(3), num_pool, num_labelled, bu, bl, steps, True
    )
    sizes = batching.labelled_batch_sizes(num_labelled, bl, True)
    assert sizes == (3, 3, 3, 1)
    unlabelled, labelled = np.asarray(unlabelled), np.asarray(labelled)
    assert unlabelled.shape == (steps, bu) and labelled.shape == (steps, bl)
    assert len(np.unique(unlabelled)) == steps * bu  # 400 <= 500: no image twice
    assert unlabelled.min() >= 0 and unlabelled.max() < num_pool
    passes = []
    for start in range(0, steps, 4):
        rows = range(start, min(start + 4, steps))
        drawn = np.concatenate([labelled[i, : sizes[i - start]] for i in rows])
        if len(rows) == 4:
            np.testing.assert_array_equal(np.sort(drawn), np.arange(num_labelled))
        else:  # an epoch ending mid-pass: distinct labels from a fresh pass
            assert len(np.unique(drawn)) == drawn.size
        passes.append(drawn)
    assert not np.array_equal(passes[0], passes[1])


def _revision_exp(pipeline: str, num_train: int = 1000):
    config = mnist100_revision.get_config()
    config.revision.pipeline = pipeline
    config.data.validation = 100
    return experiment.build_experiment(config, synthetic_mnist(num_train=num_train, num_test=20))


def test_official_pipeline_epoch_and_pool():
    """Their epoch: N // (Bu + Bl) steps over all N training images (validation and labelled
    ones included); 'exon': one pass over the unlabelled split. 60 000 images give 468."""
    official, exon = _revision_exp("official"), _revision_exp("exon")
    assert official.settings.num_unlabelled == 1000  # 900 train + 100 validation
    assert official.settings.steps_per_epoch == 1000 // 128
    assert official.settings.labelled_sizes == (32, 32, 32, 4)
    assert official.dataset.train.labels.shape == (1000,)
    # the labelled images are the same ones in both pipelines
    np.testing.assert_array_equal(
        official.dataset.train.images[official.labelled_idx],
        exon.dataset.train.images[exon.labelled_idx],
    )
    assert exon.settings.num_unlabelled == 900 - 100
    assert exon.settings.steps_per_epoch == -(-800 // 96)
    assert exon.settings.labelled_sizes == (32,)
    pipeline = methods.REVISION.pipeline(mnist100_revision.get_config())
    assert pipeline.epoch_steps(60000, 96, 32) == 468


@pytest.mark.slow  # ~26 s loaded: compiles an unrolled cycle of steps
def test_scanned_epoch_with_restarting_labelled_batches_equals_stepwise():
    """Cycles of (4, 4, 2) labelled images, scanned (one program, the cycle unrolled) and
    one compiled step per call, train the same model; an epoch of 7 steps ends mid-cycle."""
    config = mnist_config.get_config()
    config.data.labelled_per_class = 1
    config.train.batch_unlabelled = 100
    config.train.batch_labelled = 4
    exp = experiment.build_experiment(config, synthetic_mnist(num_train=800, num_test=20))
    settings = dataclasses.replace(exp.settings, epoch_steps=7, labelled_restart=True)
    assert settings.labelled_sizes == (4, 4, 2)
    step = train.make_indexed_step(train.make_train_step(exp.model, exp.optimizer, settings))
    scanned = jax.jit(train.over_models(train.make_train_epoch(step, settings), 1))
    stepwise = train.make_stepwise_epoch(jax.jit(train.over_models(step, 1)), settings)
    states, hparams = experiment.init_states(exp), experiment.sharded_hparams(exp)
    data = experiment.device_data(exp)
    key = experiment.epoch_key(exp.spec.data.seed, 0, exp.mesh)
    a, metrics_a = scanned(states, hparams, data, key)
    states = experiment.init_states(exp)
    b, metrics_b = stepwise(states, hparams, data, key)
    assert int(a.step[0]) == int(b.step[0]) == 7
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_allclose(x, y, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(metrics_a["loss"], metrics_b["loss"], rtol=1e-5)


def test_methods_registry_names_every_configured_method():
    assert configuration.METHODS == ("exon", "revision")
    config = mnist100_revision.get_config()
    assert methods.method_of(config) is methods.REVISION
    assert methods.method_of(mnist_config.get_config()) is methods.EXON
    config.method = "nope"
    with pytest.raises(KeyError, match="nope"):
        methods.method_of(config)
