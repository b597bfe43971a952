"""Tests for exon_jax.priors: layouts from first principles, densities vs scipy."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from exon_jax import priors
from exon_jax.priors import MixturePrior
from tests.lowerings import count_lowerings

# Jitted entry point keeps the number of XLA compilations (the test runtime) small.
prior_log_density = jax.jit(priors.prior_log_density)


def _numpy_mixture_log_density(z, means, variances, weights):
    """log sum_k w_k N(z; mu_k, diag(v_k)) in float64 via scipy."""
    z = np.asarray(z, np.float64)
    comps = np.stack(
        [
            stats.multivariate_normal(
                mean=np.asarray(m, np.float64),
                cov=stats.Covariance.from_diagonal(np.asarray(v, np.float64)),
            ).logpdf(z)
            for m, v in zip(means, variances)
        ],
        axis=-1,
    )
    return logsumexp(np.log(np.asarray(weights, np.float64)) + comps, axis=-1)


def _random_prior(rng, num_classes, dim):
    means = rng.normal(scale=3.0, size=(num_classes, dim))
    variances = rng.uniform(0.3, 3.0, size=(num_classes, dim))
    weights = rng.uniform(0.2, 1.0, size=num_classes)
    return means, variances, weights / weights.sum()


# ---------------------------------------------------------------- layouts


def test_circle_default_geometry_k10():
    """Oracle: hand geometry -- label 0 at 18 deg, 36 deg steps CCW, r = 4/sin(pi/10), gaps 8."""
    prior = priors.circle_prior()
    means = np.asarray(prior.means, np.float64)
    assert means.shape == (10, 2)
    radius = 4.0 / math.sin(math.pi / 10)
    np.testing.assert_allclose(np.linalg.norm(means, axis=1), radius, rtol=1e-5)
    angles = np.degrees(np.arctan2(means[:, 1], means[:, 0])) % 360.0
    np.testing.assert_allclose(angles, 18.0 + 36.0 * np.arange(10), atol=1e-4)
    # label 0 lies in the first quadrant, just above three o'clock
    assert means[0, 0] > 0 and means[0, 1] > 0
    # counter-clockwise: the cross product of consecutive centres is positive
    cross = means[:-1, 0] * means[1:, 1] - means[:-1, 1] * means[1:, 0]
    assert np.all(cross > 0)
    gaps = np.linalg.norm(means - np.roll(means, -1, axis=0), axis=1)
    np.testing.assert_allclose(gaps, 8.0, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(prior.variances), 4.0)
    np.testing.assert_allclose(np.asarray(prior.log_weights), math.log(0.1), rtol=1e-6)
    assert prior.means.dtype == jnp.float32


@pytest.mark.parametrize("num_classes,variance", [(2, 4.0), (3, 1.0), (7, 2.5), (10, 9.0)])
def test_circle_geometry_general(num_classes, variance):
    """Oracle: theta_k = (2k+1)pi/K and neighbouring gap 4 sqrt(v) (chord 2 r sin(pi/K))."""
    prior = priors.circle_prior(num_classes=num_classes, variance=variance)
    means = np.asarray(prior.means, np.float64)
    theta = (2 * np.arange(num_classes) + 1) * np.pi / num_classes
    radius = 2.0 * math.sqrt(variance) / math.sin(math.pi / num_classes)
    expected = radius * np.stack([np.cos(theta), np.sin(theta)], axis=-1)
    np.testing.assert_allclose(means, expected, rtol=1e-5, atol=1e-5 * radius)
    gaps = np.linalg.norm(means - np.roll(means, -1, axis=0), axis=1)
    np.testing.assert_allclose(gaps, 4.0 * math.sqrt(variance), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(prior.variances), variance)
    np.testing.assert_allclose(np.exp(np.asarray(prior.log_weights)), 1.0 / num_classes, rtol=1e-6)


def test_circle_explicit_radius():
    """Oracle: an explicit radius overrides the default; |mu_k| equals it."""
    prior = priors.circle_prior(num_classes=10, radius=5.0)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(prior.means), axis=1), 5.0, rtol=1e-6)


@pytest.mark.parametrize("distance", [8.0, 16.0, 24.0, 32.0])
def test_two_component_layout(distance):
    """Oracle: Appendix 6.3.2 -- centres (-d/2, 0), (+d/2, 0), variance 4, weights 1/2."""
    prior = priors.two_component_prior(distance)
    np.testing.assert_allclose(
        np.asarray(prior.means), [[-distance / 2, 0.0], [distance / 2, 0.0]], rtol=1e-7
    )
    np.testing.assert_allclose(np.asarray(prior.variances), np.full((2, 2), 4.0))
    np.testing.assert_allclose(np.exp(np.asarray(prior.log_weights)), [0.5, 0.5], rtol=1e-6)
    assert prior.num_classes == 2 and prior.latent_dim == 2


def test_blocks_layout():
    """Oracle: DESIGN sec. 1 -- t_k = 6 - 12k/9 on dims 0..99, 0 on 100..299, variances 0.1 / 1.0."""
    prior = priors.blocks_prior()
    means = np.asarray(prior.means)
    variances = np.asarray(prior.variances)
    assert means.shape == (10, 300) and variances.shape == (10, 300)
    levels = np.array([6.0 - 12.0 * k / 9.0 for k in range(10)])
    assert levels[0] == 6.0 and levels[-1] == -6.0
    np.testing.assert_allclose(
        means[:, :100], np.repeat(levels[:, None], 100, axis=1), rtol=1e-6, atol=1e-6
    )
    np.testing.assert_array_equal(means[:, 100:], 0.0)
    np.testing.assert_allclose(variances[:, :100], 0.1, rtol=1e-7)
    np.testing.assert_allclose(variances[:, 100:], 1.0, rtol=1e-7)
    np.testing.assert_allclose(np.exp(np.asarray(prior.log_weights)), 0.1, rtol=1e-6)


def test_make_prior_normalises_weights():
    """Oracle: w / sum(w) computed in numpy; scalar variance broadcast to [K, d]."""
    weights = np.array([1.0, 3.0, 4.0])
    prior = priors.make_prior(np.zeros((3, 2)), 2.0, weights)
    np.testing.assert_allclose(
        np.asarray(prior.log_weights), np.log(weights / weights.sum()), rtol=1e-6
    )
    np.testing.assert_allclose(np.asarray(prior.variances), np.full((3, 2), 2.0))
    with pytest.raises(ValueError):
        priors.make_prior(np.zeros((3, 2)), 1.0, np.ones(4))
    with pytest.raises(ValueError):
        priors.make_prior(np.zeros(3), 1.0)


def test_make_prior_converts_on_the_host_as_xla_would_and_compiles_nothing():
    """Oracle: XLA's own float64 -> float32 conversion of the same arrays (bit for bit); a
    prior without weights is built without compiling a program."""
    rng = np.random.default_rng(3)
    means, variances = rng.normal(size=(7, 5)) * 10, rng.uniform(0.1, 9.0, size=(7, 5))
    (prior, scalar), compiled = count_lowerings(
        lambda: (priors.make_prior(means, variances), priors.make_prior(means, 2.5))
    )
    assert compiled == 0
    to_f32 = jax.jit(lambda a: a.astype(jnp.float32))
    with jax.enable_x64(True):
        want_means = np.asarray(to_f32(jnp.asarray(means, jnp.float64)))
        want_variances = np.asarray(to_f32(jnp.asarray(variances, jnp.float64)))
    assert np.asarray(prior.means).tobytes() == want_means.tobytes()
    assert np.asarray(prior.variances).tobytes() == want_variances.tobytes()
    assert np.asarray(scalar.variances).shape == (7, 5)
    np.testing.assert_array_equal(np.asarray(scalar.variances), np.float32(2.5))
    np.testing.assert_array_equal(np.asarray(prior.log_weights), np.float32(-np.log(7)))
    assert all(isinstance(leaf, jax.Array) for leaf in prior)


# ---------------------------------------------------------------- pytree / vmap


def test_prior_is_pytree_and_vmaps():
    """Oracle: scipy mixture log-density of each two_component prior in a vmapped batch."""
    distances = jnp.array([8.0, 24.0])
    batched = jax.vmap(priors.two_component_prior)(distances)
    assert isinstance(batched, MixturePrior)
    assert len(jax.tree_util.tree_leaves(batched)) == 3
    assert batched.means.shape == (2, 2, 2) and batched.variances.shape == (2, 2, 2)
    assert batched.log_weights.shape == (2, 2)
    z = np.random.default_rng(0).normal(scale=6.0, size=(5, 2)).astype(np.float32)
    got = jax.jit(jax.vmap(priors.prior_log_density, in_axes=(None, 0)))(z, batched)
    for i, d in enumerate([8.0, 24.0]):
        expected = _numpy_mixture_log_density(
            z, [[-d / 2, 0.0], [d / 2, 0.0]], [[4.0, 4.0]] * 2, [0.5, 0.5]
        )
        np.testing.assert_allclose(np.asarray(got[i]), expected, rtol=1e-5)
    # the batch also flows through tree_map like any other pytree
    doubled = jax.tree_util.tree_map(lambda a: 2 * a, batched)
    np.testing.assert_allclose(np.asarray(doubled.means), 2 * np.asarray(batched.means))


# ---------------------------------------------------------------- densities


@pytest.mark.parametrize("name", ["circle", "two_component", "blocks", "random_weighted"])
def test_prior_log_density_vs_scipy(name):
    """Oracle: logsumexp_k [log w_k + scipy multivariate_normal.logpdf] in float64."""
    rng = np.random.default_rng(1)
    if name == "circle":
        prior = priors.circle_prior()
    elif name == "two_component":
        prior = priors.two_component_prior(16.0)
    elif name == "blocks":
        prior = priors.blocks_prior()
    else:
        m, v, w = _random_prior(rng, 4, 3)
        prior = priors.make_prior(m, v, w)
    means = np.asarray(prior.means, np.float64)
    variances = np.asarray(prior.variances, np.float64)
    weights = np.exp(np.asarray(prior.log_weights, np.float64))
    # points near the components and far away
    k = rng.integers(0, prior.num_classes, size=12)
    z = means[k] + rng.normal(size=(12, prior.latent_dim)) * np.sqrt(variances[k]) * 2.0
    z = z.astype(np.float32)
    got = np.asarray(prior_log_density(jnp.asarray(z), prior))
    expected = _numpy_mixture_log_density(z, means, variances, weights)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_component_log_density_shapes_and_values():
    """Oracle: scipy.stats.norm.logpdf summed over dims, for z of shape [2, 3, d]."""
    rng = np.random.default_rng(2)
    m, v, w = _random_prior(rng, 3, 4)
    prior = priors.make_prior(m, v, w)
    z = rng.normal(size=(2, 3, 4)).astype(np.float32)
    got = np.asarray(priors.component_log_density(jnp.asarray(z), prior))
    assert got.shape == (2, 3, 3)
    expected = stats.norm.logpdf(z[..., None, :], m, np.sqrt(v)).sum(-1)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert priors.prior_log_density(jnp.asarray(z), prior).shape == (2, 3)


@pytest.mark.parametrize("name", ["circle", "two_component"])
def test_log_density_integrates_to_one(name):
    """Oracle: 2-D trapezoid integral of exp(log p) over a wide grid equals 1."""
    prior = priors.circle_prior() if name == "circle" else priors.two_component_prior(32.0)
    grid = np.linspace(-30.0, 30.0, 601)
    zz = np.stack(np.meshgrid(grid, grid, indexing="ij"), axis=-1).astype(np.float32)
    density = np.exp(np.asarray(prior_log_density(jnp.asarray(zz), prior), np.float64))
    total = np.trapezoid(np.trapezoid(density, grid, axis=1), grid)
    assert abs(total - 1.0) < 1e-4, total


# ---------------------------------------------------------------- sampling


def test_sample_prior_moments():
    """Oracle: mixture mean sum_k w_k mu_k and variance sum_k w_k (v_k + mu_k^2) - mean^2, within 5 s.e."""
    rng = np.random.default_rng(3)
    m, v, w = _random_prior(rng, 4, 3)
    prior = priors.make_prior(m, v, w)
    n = 200_000
    z, y = priors.sample_prior(jax.random.key(0), prior, n)
    z = np.asarray(z, np.float64)
    y = np.asarray(y)
    assert z.shape == (n, 3) and y.shape == (n,) and y.dtype == np.int32
    mix_mean = (w[:, None] * m).sum(0)
    mix_var = (w[:, None] * (v + m**2)).sum(0) - mix_mean**2
    se_mean = np.sqrt(mix_var / n)
    assert np.all(np.abs(z.mean(0) - mix_mean) < 5 * se_mean), (z.mean(0), mix_mean)
    centred_sq = (z - mix_mean) ** 2
    se_var = centred_sq.std(0) / np.sqrt(n)
    assert np.all(np.abs(centred_sq.mean(0) - mix_var) < 5 * se_var), (centred_sq.mean(0), mix_var)
    # label frequencies follow the weights
    counts = np.bincount(y, minlength=4)
    assert stats.chisquare(counts, n * w).pvalue > 1e-3
    # conditional on the label, z follows component k
    for k in range(4):
        zk = z[y == k]
        se = np.sqrt(v[k] / len(zk))
        assert np.all(np.abs(zk.mean(0) - m[k]) < 5 * se)
        np.testing.assert_allclose(zk.var(0), v[k], rtol=5 * np.sqrt(2.0 / len(zk)))


def test_variances_below_the_floor_are_refused_naming_where():
    """A variance under MIN_VARIANCE (1e-6) is refused with `where` and the smallest value;
    exactly 1e-6 is accepted (the CLI's one line for both: tests/test_one_line_faults.py)."""
    means = [[8.0 * k, 0.0] for k in range(10)]
    with pytest.raises(priors.PriorError, match=r"my\.json: variances must be >= 1e-06, got 1e-30"):
        priors.check_prior_arrays(means, 1e-30, where="my.json")
    _, variances, _ = priors.check_prior_arrays(means, 1e-6)
    assert variances.min() == 1e-6
