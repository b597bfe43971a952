"""Tests for exon_jax.analysis: grids, label maps and latent probes vs NumPy oracles."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from exon_jax import analysis
from exon_jax.priors import circle_prior, two_component_prior


def _point_image_decoder(height=4, width=5):
    """Fake decoder: channel c of every pixel equals coordinate c of the code (C = 2)."""

    def decode_fn(z):
        return jnp.broadcast_to(z[:, None, None, :], (z.shape[0], height, width, z.shape[1]))

    return decode_fn


def _nearest_centre_classifier(means):
    """Fake classifier: reads the code back from pixel (0, 0), logits = -distance^2 to centres."""
    means = jnp.asarray(means)

    def classify_fn(images):
        z = images[:, 0, 0, :]
        return -jnp.sum((z[:, None, :] - means[None]) ** 2, axis=-1)

    return classify_fn


# ---------------------------------------------------------------- grids


@pytest.mark.parametrize("extent,size", [(15.0, 13), (2.0, 2), (3.5, 6)])
def test_latent_grid_matches_meshgrid(extent, size):
    """Oracle: np.meshgrid with the second axis reversed (row 0 = top = +extent)."""
    ticks = np.linspace(-extent, extent, size)
    first, second = np.meshgrid(ticks, ticks[::-1])  # [row, col]
    expected = np.stack([first, second], axis=-1).reshape(-1, 2)
    grid = np.asarray(analysis.latent_grid(extent, size))
    assert grid.shape == (size * size, 2)
    np.testing.assert_allclose(grid, expected, atol=1e-5)


def test_latent_grid_orientation_and_spacing():
    """Hand geometry: corners, constant spacing 2e/(S-1), rows top to bottom."""
    extent, size = 15.0, 13
    grid = np.asarray(analysis.latent_grid(extent, size)).reshape(size, size, 2)
    np.testing.assert_allclose(grid[0, 0], [-extent, extent])  # top-left
    np.testing.assert_allclose(grid[0, -1], [extent, extent])  # top-right
    np.testing.assert_allclose(grid[-1, 0], [-extent, -extent])  # bottom-left
    np.testing.assert_allclose(grid[-1, -1], [extent, -extent])  # bottom-right
    step = 2 * extent / (size - 1)
    np.testing.assert_allclose(np.diff(grid[..., 0], axis=1), step, rtol=1e-5)
    np.testing.assert_allclose(np.diff(grid[..., 1], axis=0), -step, rtol=1e-5)
    np.testing.assert_allclose(np.diff(grid[..., 0], axis=0), 0.0)
    np.testing.assert_allclose(np.diff(grid[..., 1], axis=1), 0.0)


def test_latent_grid_rejects_bad_arguments():
    with pytest.raises(ValueError, match="size"):
        analysis.latent_grid(1.0, 1)
    with pytest.raises(ValueError, match="extent"):
        analysis.latent_grid(0.0, 5)


def test_latent_grid_jits_with_traced_extent():
    grid = jax.jit(analysis.latent_grid, static_argnums=1)(4.0, 5)
    np.testing.assert_allclose(np.asarray(grid), np.asarray(analysis.latent_grid(4.0, 5)))


def test_decode_grid_passes_grid_points_in_order():
    images = analysis.decode_grid(_point_image_decoder(), 15.0, 13)
    assert images.shape == (169, 4, 5, 2)
    np.testing.assert_allclose(
        np.asarray(images[:, 2, 3, :]), np.asarray(analysis.latent_grid(15.0, 13))
    )


# ---------------------------------------------------------------- label map


def _numpy_nearest_centre_map(means, extent, size):
    """Independent oracle: nearest centre of every meshgrid point, row 0 at the top.

    Returns:
      ([S, S] labels, [S, S] bool: the point is not (nearly) equidistant from two
      centres, so float32 rounding cannot flip its label).
    """
    ticks = np.linspace(-extent, extent, size)
    first, second = np.meshgrid(ticks, ticks[::-1])
    points = np.stack([first, second], axis=-1)  # [S, S, 2]
    distance = np.sum(
        (points[:, :, None, :] - np.asarray(means, np.float64)[None, None]) ** 2, axis=-1
    )
    nearest_two = np.sort(distance, axis=-1)[..., :2]
    clear = nearest_two[..., 1] - nearest_two[..., 0] > 1e-3 * (1.0 + nearest_two[..., 0])
    return np.argmin(distance, axis=-1), clear


@pytest.mark.parametrize("size,chunk_size", [(31, 100), (20, 400), (7, 2000), (9, 1)])
def test_label_map_matches_numpy_nearest_centre(size, chunk_size):
    prior = circle_prior()
    extent = 15.0
    labels = analysis.label_map(
        _point_image_decoder(),
        _nearest_centre_classifier(prior.means),
        extent,
        size,
        chunk_size=chunk_size,
    )
    assert labels.shape == (size, size) and labels.dtype == jnp.int32
    expected, clear = _numpy_nearest_centre_map(prior.means, extent, size)
    # Odd sizes put grid points on the Voronoi boundaries (the origin, the z_1 axis).
    assert clear.mean() > 0.8
    np.testing.assert_array_equal(np.asarray(labels)[clear], expected[clear])


def test_label_map_orientation_two_components():
    """Two centres at (0, +-5): the top half is component 1 (upper), the bottom half 0."""
    means = np.array([[0.0, -5.0], [0.0, 5.0]], np.float32)
    labels = analysis.label_map(
        _point_image_decoder(), _nearest_centre_classifier(means), 10.0, 10, chunk_size=7
    )
    labels = np.asarray(labels)
    assert (labels[:5] == 1).all() and (labels[5:] == 0).all()


def test_label_map_jits():
    prior = two_component_prior(16.0)
    run = jax.jit(
        lambda extent: analysis.label_map(
            _point_image_decoder(),
            _nearest_centre_classifier(prior.means),
            extent,
            12,
            chunk_size=50,
        )
    )
    expected, clear = _numpy_nearest_centre_map(prior.means, 10.0, 12)
    assert clear.all()
    np.testing.assert_array_equal(np.asarray(run(10.0)), expected)


# ---------------------------------------------------------------- interpolation


def test_interpolate_endpoints_and_linearity():
    rng = np.random.default_rng(0)
    start, end = rng.normal(size=(2, 7)).astype(np.float32)
    num = 6
    path = np.asarray(analysis.interpolate(jnp.asarray(start), jnp.asarray(end), num))
    assert path.shape == (num, 7)
    np.testing.assert_allclose(path[0], start, atol=1e-6)
    np.testing.assert_allclose(path[-1], end, atol=1e-6)
    t = np.linspace(0.0, 1.0, num)[:, None]
    np.testing.assert_allclose(path, t * end + (1 - t) * start, atol=1e-5)
    # Equal steps along a straight line.
    np.testing.assert_allclose(
        np.diff(path, axis=0), np.broadcast_to((end - start) / (num - 1), (num - 1, 7)), atol=1e-5
    )


def test_predesign_path_is_appendix_segment():
    path = np.asarray(analysis.predesign_path())
    expected = np.stack([np.linspace(-10.0, 10.0, 11), np.zeros(11)], axis=-1)
    np.testing.assert_allclose(path, expected, atol=1e-5)


def test_centre_interpolation_joins_designed_centres():
    prior = circle_prior()
    path = np.asarray(analysis.centre_interpolation(prior, 2, 7, 5))
    means = np.asarray(prior.means)
    np.testing.assert_allclose(path[0], means[2], atol=1e-5)
    np.testing.assert_allclose(path[-1], means[7], atol=1e-5)
    np.testing.assert_allclose(path[2], 0.5 * (means[2] + means[7]), atol=1e-5)
    with pytest.raises(ValueError, match="k_to"):
        analysis.centre_interpolation(prior, 0, 10, 5)


# ---------------------------------------------------------------- probes


@pytest.mark.parametrize("scale", [1.5, 1.0])
def test_noise_probe_changes_only_chosen_dims(scale):
    rng = np.random.default_rng(1)
    dim, num = 30, 64
    code = rng.normal(size=dim).astype(np.float32)
    mask = rng.uniform(size=dim) < 0.3
    on_active, on_inactive = analysis.noise_probe(
        jax.random.key(0), jnp.asarray(code), jnp.asarray(mask), scale, num
    )
    on_active, on_inactive = np.asarray(on_active), np.asarray(on_inactive)
    assert on_active.shape == on_inactive.shape == (num, dim)
    # Dims outside the noised set are the code, bit for bit.
    np.testing.assert_array_equal(on_active[:, ~mask], np.tile(code[~mask], (num, 1)))
    np.testing.assert_array_equal(on_inactive[:, mask], np.tile(code[mask], (num, 1)))
    active_noise = on_active[:, mask] - code[mask]
    inactive_noise = on_inactive[:, ~mask] - code[~mask]
    for noise in (active_noise, inactive_noise):
        assert np.all(np.abs(noise) <= scale + 1e-5)
        assert np.all(noise != 0.0)
        # U(-a, a) has mean 0 and std a / sqrt(3); loose Monte-Carlo bounds.
        assert abs(noise.mean()) < 0.2 * scale
        assert abs(noise.std() - scale / np.sqrt(3)) < 0.15 * scale
    # The two probes use independent draws.
    assert not np.allclose(on_active[:, :1] - code[:1], on_inactive[:, :1] - code[:1])


def test_traversal_sets_one_axis():
    rng = np.random.default_rng(2)
    code = rng.normal(size=12).astype(np.float32)
    rows = np.asarray(analysis.traversal(jnp.asarray(code), 5, num=9))
    assert rows.shape == (9, 12)
    np.testing.assert_allclose(rows[:, 5], np.linspace(-2.0, 2.0, 9), atol=1e-6)
    others = np.delete(rows, 5, axis=1)
    np.testing.assert_array_equal(others, np.broadcast_to(np.delete(code, 5), (9, 11)))
    traced = jax.jit(analysis.traversal, static_argnames="num")(jnp.asarray(code), 5, num=9)
    np.testing.assert_allclose(np.asarray(traced), rows)
    with pytest.raises(ValueError, match="axis"):
        analysis.traversal(jnp.asarray(code), 12)


def test_top_activated_axes_matches_argsort():
    rng = np.random.default_rng(3)
    ratios = rng.exponential(size=300).astype(np.float32)
    axes = analysis.top_activated_axes(jnp.asarray(ratios), 4)
    assert axes.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(axes), np.argsort(-ratios, kind="stable")[:4])


def test_top_activated_axes_ranks_nan_last():
    ratios = jnp.array([0.5, jnp.nan, 2.0, 1.0])
    np.testing.assert_array_equal(np.asarray(analysis.top_activated_axes(ratios, 4)), [2, 3, 0, 1])
    with pytest.raises(ValueError, match="count"):
        analysis.top_activated_axes(ratios, 5)


# ---------------------------------------------------------------- posterior codes (Figures 3, 4)


def test_posterior_codes_mean_is_the_most_probable_components_mean():
    """NumPy oracle: mean[i, argmax_k logits[i, k]]."""
    rng = np.random.default_rng(1)
    logits, mean = rng.normal(size=(6, 3)), rng.normal(size=(6, 3, 2))
    codes = analysis.posterior_codes(jnp.asarray(logits), jnp.asarray(mean), jnp.zeros((6, 3, 2)))
    np.testing.assert_allclose(codes, mean[np.arange(6), logits.argmax(axis=1)], rtol=1e-6)


def test_posterior_codes_samples_follow_the_mixture():
    """Monte-Carlo oracle: one input replicated 20 000 times with w = (0.25, 0.75);
    component k has mean (10 k, -5 k) and sd (0.5, 2); z is classified by its first
    coordinate, and each component's draws have that mean and sd."""
    n = 20_000
    logits = jnp.broadcast_to(jnp.log(jnp.array([0.25, 0.75])), (n, 2))
    centres = np.array([[0.0, 0.0], [10.0, -5.0]])
    mean = jnp.broadcast_to(jnp.asarray(centres, jnp.float32), (n, 2, 2))
    logvar = jnp.broadcast_to(jnp.log(jnp.array([0.25, 4.0])), (n, 2, 2))
    z = np.asarray(analysis.posterior_codes(logits, mean, logvar, "samples", jax.random.key(0)))
    second = z[:, 0] > 5.0
    assert abs(second.mean() - 0.75) < 0.015  # 5 sd of a binomial share
    for k, chosen in ((0, ~second), (1, second)):
        np.testing.assert_allclose(z[chosen].mean(axis=0), centres[k], atol=0.1)
        np.testing.assert_allclose(z[chosen].std(axis=0), [0.5, 2.0], rtol=0.05)


def test_posterior_codes_rejects_bad_kind_and_missing_key():
    logits, mean = jnp.zeros((2, 2)), jnp.zeros((2, 2, 2))
    with pytest.raises(ValueError, match="kind"):
        analysis.posterior_codes(logits, mean, mean, "median")
    with pytest.raises(ValueError, match="key"):
        analysis.posterior_codes(logits, mean, mean, "samples")
