"""The faster paths of issue 24 against the slower computations they replace.

- `metrics.pairwise_ssim` (each image's filtered moments once, a pair's filtered product
  as matmuls) against `dm_pix.ssim` on every pair, the library's own SSIM;
- `figures.model_figure_arrays` (every model's figure arrays in one compiled call) against
  the one-model-at-a-time functions it batches (`scatter_codes`, `analysis.decode_grid`,
  `ModelFunctions.label_map`, `priors.sample_prior`, decoded `centre_interpolation`).
"""

import os
import types

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from exon_jax import analysis, figures, metrics, priors
from tests.lowerings import count_lowerings


def _dm_pix_pairwise(images):
    def one(a, b):
        return dm_pix.ssim(
            a,
            b,
            max_val=metrics.SSIM_MAX_VAL,
            filter_size=metrics.SSIM_FILTER_SIZE,
            filter_sigma=metrics.SSIM_FILTER_SIGMA,
            k1=metrics.SSIM_K1,
            k2=metrics.SSIM_K2,
        )

    pairs = jax.jit(lambda x: jax.vmap(lambda a: jax.vmap(lambda b: one(a, b))(x))(x))
    return np.asarray(pairs(images))


@pytest.mark.parametrize("shape", [(7, 28, 28, 1), (6, 11, 15, 2)])
def test_pairwise_ssim_matches_dm_pix_on_every_pair(shape):
    images = jax.random.uniform(jax.random.key(3), shape)
    images = images.at[0].set(0.0).at[1].set(1.0)  # flat images: the clipped variances
    images = images.at[2].set(1.0 - images[3])  # a negative covariance: the clipped one
    expected = _dm_pix_pairwise(images)
    np.testing.assert_allclose(np.asarray(metrics.pairwise_ssim(images)), expected, atol=2e-6)
    np.testing.assert_allclose(
        np.asarray(metrics.pairwise_ssim(images, rows_per_block=4)), expected, atol=2e-6
    )


def _grid_run(posterior: str, interpolations=()):
    """An untrained 2-model grid of the tiny config on synthetic data (2-D latent)."""
    from configs import mnist
    from exon_jax import experiment
    from tests.synthetic import synthetic_mnist

    config = mnist.get_config("tiny")
    config.model.hidden = (32, 32)
    config.analysis.grid_size = 5
    config.analysis.label_map_size = 20
    config.analysis.posterior = posterior
    config.analysis.interpolations = interpolations
    config.data.max_test = 60
    config.data.labelled_per_class = 10
    config.train.batch_unlabelled, config.train.batch_labelled = 100, 20
    config.sweep.lambda1 = (1.0, 100.0)
    dataset = synthetic_mnist(num_train=200, num_test=60)
    exp = experiment.build_experiment(config, dataset)
    states = experiment.init_states(exp)
    return exp, states, experiment.evaluate_states(exp, states)


def test_model_figure_arrays_equal_the_one_model_computations():
    interpolations = ((4, 9), (0, 1))
    exp, states, evaluated = _grid_run("samples", interpolations)
    fns = figures.ModelFunctions(exp.model)
    names = exp.dataset.class_names
    extents = [8.0, 11.5]  # different per model: each model's own grid
    batched = figures.model_figure_arrays(exp, fns, states, evaluated["codes"], extents)
    pairs = figures.interpolation_pairs(interpolations, names)
    for i, extent in enumerate(extents):
        state, prior = figures.model_state(states, i), figures.prior_of(exp, i)
        codes = np.asarray(evaluated["codes"][i])
        np.testing.assert_allclose(
            batched["shown"][i], figures.scatter_codes(exp, fns, state, i, codes), atol=1e-5
        )
        z, y = priors.sample_prior(jax.random.key(exp.analysis.seed), prior, figures.PRIOR_SAMPLES)
        np.testing.assert_allclose(batched["prior_z"][i], np.asarray(z), atol=1e-6)
        np.testing.assert_array_equal(batched["prior_y"][i], np.asarray(y))
        manifold = analysis.decode_grid(lambda g: fns.decode(state, g), extent, 5)
        np.testing.assert_allclose(batched["manifold"][i], np.asarray(manifold), atol=1e-5)
        np.testing.assert_array_equal(batched["label_map"][i], fns.label_map(state, extent, 20))
        strips = [
            fns.decode_np(state, analysis.centre_interpolation(prior, a, b, 11)) for a, b in pairs
        ]
        np.testing.assert_allclose(batched["strips"][i], np.stack(strips), atol=1e-5)
    assert len(figures.strip_titles_of(exp, names)) == len(pairs)
    # the two models differ, so the batch did not repeat model 0
    assert not np.allclose(batched["manifold"][0], batched["manifold"][1])
    assert jnp.asarray(batched["label_map"]).dtype == jnp.int32


def test_parameter_health_of_local_parameters_is_numpy_and_matches_the_jitted_one(monkeypatch):
    """Parameters on this process are checked on the host (no compiled reduction), with
    the values of the jitted reduction that parameters sharded over processes use, and
    of a hand count: model 0 sound, 1 with a NaN, 2 with |parameter| 3e8."""
    from exon_jax import evaluation

    rng = np.random.default_rng(2)
    params = {
        "dense": {"kernel": rng.normal(size=(3, 4, 5)).astype(np.float32)},
        "bias": rng.normal(size=(3, 5)).astype(np.float32),
        "half": np.asarray(rng.normal(size=(3, 2)), jnp.bfloat16),
        "count": np.arange(3, dtype=np.int32),  # not floating: ignored
    }
    params["dense"]["kernel"][1, 2, 3] = np.nan
    params["bias"][2, 4] = -3e8
    device_params = jax.tree.map(jnp.asarray, params)
    jitted = evaluation._sharded_parameter_health
    calls = []
    monkeypatch.setattr(
        evaluation, "_sharded_parameter_health", lambda x: calls.append(1) or jitted(x)
    )
    finite, largest = evaluation.parameter_health(device_params)
    assert calls == []
    np.testing.assert_array_equal(finite, [True, False, True])
    floating = [params["dense"]["kernel"], params["bias"], params["half"].astype(np.float32)]
    for g in (0, 2):
        assert largest[g] == max(np.abs(x[g]).max() for x in floating)
    assert largest[2] == np.float32(3e8)
    expected = jitted([x for x in jax.tree.leaves(device_params) if x.dtype != jnp.int32])
    np.testing.assert_array_equal(finite, np.asarray(expected[0]))
    np.testing.assert_array_equal(largest, np.asarray(expected[1]))
    assert evaluation.unsound_models(finite, largest, None) == {
        "non-finite parameters": [1],
        "parameters out of range (largest |parameter| 3e+08 > 1e+08: the learning rate is "
        "likely too high)": [2],
    }


def test_the_training_process_imports_no_matplotlib_when_workers_draw(tmp_path):
    """Figures are built as jobs in the training process and drawn by the workers: the
    training process never imports Matplotlib (its import was 0.35 s of every run's set-up
    on 2 cores), and the workers still write the figure."""
    import subprocess
    import sys

    code = f"""
import dataclasses, sys
import numpy as np
from exon_jax import figures, saved_run, training, workflow
from exon_jax.ops import figure_workers
job = figure_workers.FigureJob(
    "image_grid", {str(tmp_path / "grid.png")!r}, (np.zeros((4, 5, 5, 1), np.float32),),
    {{"nrows": 2, "ncols": 2}}, pdf=True,
)
with figure_workers.FigurePool(2) as pool:
    pool.draw([job, dataclasses.replace(job, path={str(tmp_path / "b.png")!r}, pdf=False)])
print("matplotlib" in sys.modules)
"""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True
    ).stdout.split()
    assert out[-1] == "False", out
    for name in ("grid.png", "grid.pdf", "b.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert not (tmp_path / "b.pdf").exists()


def test_epoch_keys_of_later_epochs_lower_no_new_program():
    """Each epoch's batch-order key is placed on the mesh by the same compiled program: the
    key's wrapper used to be a new jitted lambda per call, lowered (and looked up in the
    compilation cache) again every epoch."""
    from exon_jax import experiment, parallel

    mesh = parallel.make_mesh(1)
    first = experiment.epoch_key(0, 0, mesh)
    later, lowered = count_lowerings(
        lambda: [experiment.epoch_key(0, epoch, mesh) for epoch in (1, 2, 3)]
    )
    assert lowered == 0
    expected = [
        jax.random.fold_in(jax.random.fold_in(jax.random.key(0), 1), e) for e in (0, 1, 2, 3)
    ]
    for key, want in zip([first, *later], expected):
        assert jax.random.key_impl(key) == jax.random.key_impl(want)
        np.testing.assert_array_equal(jax.random.key_data(key), jax.random.key_data(want))
        assert key.sharding == parallel.replicated(mesh)


@pytest.mark.parametrize("extent,size", [(15.0, 13), (30.0, 200), (4.7, 9), (0.3, 2)])
def test_latent_grid_is_one_program_bit_equal_to_op_by_op(extent, size):
    """The grid is one compiled program (it was nine, one per jnp call, at every run's
    set-up); oracle: the same jnp calls dispatched one at a time, bit for bit."""
    ticks = jnp.linspace(-jnp.float32(extent), jnp.float32(extent), size, dtype=jnp.float32)
    first = jnp.broadcast_to(ticks[None, :], (size, size))
    second = jnp.broadcast_to(ticks[::-1, None], (size, size))
    want = np.asarray(jnp.stack([first, second], axis=-1).reshape(size * size, 2))
    _, lowered = count_lowerings(
        lambda: np.asarray(analysis.latent_grid(extent, size)), clear_caches=True
    )
    assert lowered == 1
    assert np.asarray(analysis.latent_grid(extent, size)).tobytes() == want.tobytes()


def test_model_keys_are_one_program_bit_equal_to_op_by_op():
    """Oracle: fold_in(key(seed), 0) per seed, dispatched one call at a time."""
    from exon_jax import experiment

    seeds = (0, 7, 2**31 - 1, 123456789)
    want = [
        np.asarray(jax.random.key_data(jax.random.fold_in(jax.random.key(s), 0))) for s in seeds
    ]
    spec = types.SimpleNamespace(point_seeds=seeds)
    keys, lowered = count_lowerings(lambda: experiment.model_keys(spec), clear_caches=True)
    assert lowered == 1
    got = np.asarray(jax.random.key_data(keys))
    assert got.tobytes() == np.stack(want).tobytes()
