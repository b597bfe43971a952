"""Tests for exon_jax.sampling: Gumbel-Softmax and the reparameterised mixture sample."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import softmax

from exon_jax import sampling
from exon_jax.sampling import sample_latent

# Jitted entry points (temperature traced) keep the number of XLA compilations, i.e. the
# test runtime, small; eager behaviour is checked against them in
# test_sample_latent_shapes_jit_vmap.
gumbel_softmax = jax.jit(sampling.gumbel_softmax, static_argnames=("hard",))
sample_latent_jit = jax.jit(sample_latent, static_argnames=("hard",))


def _logits(seed, shape, scale=1.0):
    return jnp.asarray(np.random.default_rng(seed).normal(scale=scale, size=shape), jnp.float32)


# ---------------------------------------------------------------- gumbel_softmax


@pytest.mark.parametrize("temperature", [0.1, 1.0, 5.0])
def test_soft_samples_on_simplex(temperature):
    """Oracle: simplex definition -- entries in [0, 1], rows sum to 1, shape/dtype preserved."""
    logits = _logits(0, (3, 64, 6), scale=3.0)
    y = gumbel_softmax(jax.random.key(1), logits, temperature)
    assert y.shape == logits.shape and y.dtype == logits.dtype
    y = np.asarray(y)
    assert np.all(y >= 0) and np.all(y <= 1)
    np.testing.assert_allclose(y.sum(-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("temperature", [0.5, 1.0])
def test_argmax_frequencies_match_softmax(temperature):
    """Oracle: Gumbel-max trick -- argmax counts vs n * scipy softmax(logits), chi-square p > 1e-3."""
    logits = jnp.array([1.0, -0.5, 0.3, 2.0, -2.0], jnp.float32)
    n = 40_000
    y = gumbel_softmax(jax.random.key(7), jnp.broadcast_to(logits, (n, 5)), temperature)
    counts = np.bincount(np.asarray(jnp.argmax(y, axis=-1)), minlength=5)
    expected = n * softmax(np.asarray(logits, np.float64))
    assert stats.chisquare(counts, expected).pvalue > 1e-3, (counts, expected)


def test_argmax_frequencies_independent_keys():
    """Oracle: same chi-square test over many independent keys (one draw per key, vmapped)."""
    logits = jnp.array([0.0, 1.0, -1.0], jnp.float32)
    keys = jax.random.split(jax.random.key(3), 20_000)
    y = jax.vmap(lambda k: gumbel_softmax(k, logits))(keys)
    counts = np.bincount(np.asarray(jnp.argmax(y, axis=-1)), minlength=3)
    expected = len(keys) * softmax(np.asarray(logits, np.float64))
    assert stats.chisquare(counts, expected).pvalue > 1e-3, (counts, expected)


def test_logits_shift_invariance():
    """Oracle: softmax(logits) is shift invariant, so logits + c gives the same sample for the same key."""
    logits = _logits(2, (16, 4))
    key = jax.random.key(5)
    np.testing.assert_allclose(
        np.asarray(gumbel_softmax(key, logits)),
        np.asarray(gumbel_softmax(key, logits + 37.0)),
        atol=1e-5,
    )


def test_hard_samples_are_one_hot_and_match_soft_argmax():
    """Oracle: one_hot(argmax soft) for the same key (values within 1 ulp of {0, 1})."""
    logits = _logits(3, (512, 7), scale=2.0)
    key = jax.random.key(11)
    soft = np.asarray(gumbel_softmax(key, logits))
    hard = np.asarray(gumbel_softmax(key, logits, hard=True))
    expected = np.eye(7)[soft.argmax(-1)]
    np.testing.assert_allclose(hard, expected, rtol=0, atol=1.2e-7)


def test_hard_samples_are_exact_one_hots():
    """Oracle: exact {0, 1} one-hot values (DESIGN: forward value is one_hot(argmax y))."""
    logits = _logits(3, (512, 7), scale=2.0)
    key = jax.random.key(11)
    soft = np.asarray(gumbel_softmax(key, logits))
    hard = np.asarray(gumbel_softmax(key, logits, hard=True))
    expected = np.eye(7, dtype=np.float32)[soft.argmax(-1)]
    bad = np.flatnonzero(np.any(hard != expected, axis=-1))
    assert bad.size == 0, f"hard samples are not exact one-hots in {bad.size}/{len(hard)} rows"


def test_hard_gradient_equals_soft_gradient():
    """Oracle: straight-through -- jax.grad of c . y wrt logits equals the soft sample's, same key."""
    rng = np.random.default_rng(4)
    logits = jnp.asarray(rng.normal(size=(8, 5)), jnp.float32)
    c = jnp.asarray(rng.normal(size=(8, 5)), jnp.float32)
    key = jax.random.key(2)

    def f(lg, hard):
        return jnp.sum(c * gumbel_softmax(key, lg, 0.7, hard=hard))

    g_soft = np.asarray(jax.grad(f)(logits, False))
    g_hard = np.asarray(jax.grad(f)(logits, True))
    assert np.abs(g_soft).max() > 1e-3  # non-trivial gradient
    np.testing.assert_allclose(g_hard, g_soft, rtol=1e-5, atol=1e-7)


def test_small_temperature_concentrates():
    """Oracle: tau -> 0 gives near one-hots; fraction with max > 0.99 is large and decreasing in tau."""
    logits = _logits(5, (20_000, 5))
    key = jax.random.key(9)
    frac = {
        t: float(np.mean(np.asarray(gumbel_softmax(key, logits, t)).max(-1) > 0.99))
        for t in (0.05, 0.2, 1.0)
    }
    assert frac[0.05] > 0.75, frac
    assert frac[0.05] > frac[0.2] > frac[1.0], frac


@pytest.mark.parametrize("temperature", [0.3, 2.0, 10.0])
def test_temperature_is_honoured(temperature):
    """Oracle: same key => y_tau = softmax(log(y_1) / tau) (same Gumbel noise, logits scaled by 1/tau)."""
    logits = _logits(6, (64, 6))
    key = jax.random.key(13)
    y1 = np.asarray(gumbel_softmax(key, logits, 1.0), np.float64)
    y_tau = np.asarray(gumbel_softmax(key, logits, temperature), np.float64)
    np.testing.assert_allclose(
        y_tau, softmax(np.log(y1) / temperature, axis=-1), rtol=1e-4, atol=1e-6
    )
    # and higher temperature flattens: the entropy is monotone in tau
    ent = lambda p: -(p * np.log(np.clip(p, 1e-30, None))).sum(-1).mean()
    assert (ent(y_tau) > ent(y1)) == (temperature > 1.0)


# ---------------------------------------------------------------- sample_latent


def _posterior(seed, batch, k, d):
    rng = np.random.default_rng(seed)
    mean = jnp.asarray(rng.normal(scale=3.0, size=(batch, k, d)), jnp.float32)
    logvar = jnp.asarray(rng.uniform(-2.0, 1.0, size=(batch, k, d)), jnp.float32)
    return mean, logvar


@pytest.mark.parametrize("hard", [False, True])
def test_sample_latent_deterministic_limit(hard):
    """Oracle: logits favouring component j by 50 nats and logvar = -30 => z == mean[:, j]."""
    batch, k, d = 6, 4, 3
    mean, _ = _posterior(0, batch, k, d)
    chosen = np.array([0, 1, 2, 3, 1, 2])
    logits = jnp.asarray(50.0 * np.eye(k)[chosen], jnp.float32)
    logvar = jnp.full((batch, k, d), -30.0, jnp.float32)
    z = np.asarray(sample_latent_jit(jax.random.key(0), logits, mean, logvar, hard=hard))
    expected = np.asarray(mean)[np.arange(batch), chosen]
    np.testing.assert_allclose(z, expected, rtol=1e-5, atol=1e-5)


def test_sample_latent_moments_single_component():
    """Oracle: z ~ N(mean_j, exp(logvar_j)) -- sample mean/variance within 5 s.e. over many draws."""
    k, d, n = 3, 4, 100_000
    rng = np.random.default_rng(1)
    mean1 = rng.normal(scale=2.0, size=(k, d))
    logvar1 = rng.uniform(-1.5, 1.5, size=(k, d))
    j = 2
    logits = jnp.asarray(np.broadcast_to(60.0 * np.eye(k)[j], (n, k)), jnp.float32)
    mean = jnp.asarray(np.broadcast_to(mean1, (n, k, d)), jnp.float32)
    logvar = jnp.asarray(np.broadcast_to(logvar1, (n, k, d)), jnp.float32)
    z = np.asarray(sample_latent_jit(jax.random.key(4), logits, mean, logvar), np.float64)
    var = np.exp(logvar1[j])
    assert np.all(np.abs(z.mean(0) - mean1[j]) < 5 * np.sqrt(var / n)), (z.mean(0), mean1[j])
    # Var of the sample variance of a Gaussian is 2 var^2 / (n - 1)
    assert np.all(np.abs(z.var(0, ddof=1) - var) < 5 * var * np.sqrt(2.0 / n)), (z.var(0), var)
    # independent coordinates
    corr = np.corrcoef(z.T)[np.triu_indices(d, 1)]
    assert np.all(np.abs(corr) < 5 / np.sqrt(n))


def test_sample_latent_is_convex_combination_of_components():
    """Oracle: with logvar = -30 (no noise) and d > K, least squares recovers simplex weights y with z = sum_k y_k mean_k."""
    batch, k, d = 5, 4, 8
    mean, _ = _posterior(2, batch, k, d)
    logits = _logits(7, (batch, k))
    logvar = jnp.full((batch, k, d), -30.0, jnp.float32)
    z = np.asarray(
        sample_latent_jit(jax.random.key(21), logits, mean, logvar, temperature=0.8), np.float64
    )
    mean_np = np.asarray(mean, np.float64)
    for b in range(batch):
        y, *_ = np.linalg.lstsq(mean_np[b].T, z[b], rcond=None)
        np.testing.assert_allclose(mean_np[b].T @ y, z[b], atol=1e-4)
        assert np.all(y > -1e-4), y
        np.testing.assert_allclose(y.sum(), 1.0, atol=1e-4)


def test_sample_latent_shapes_jit_vmap():
    """Oracle: eager == jit; vmap over keys and over a model axis == a loop of single calls."""
    batch, k, d = 4, 3, 2
    mean, logvar = (np.asarray(a) for a in _posterior(3, batch, k, d))
    logits = np.asarray(_logits(8, (batch, k)))
    key = jax.random.key(5)
    eager = sample_latent(key, jnp.asarray(logits), jnp.asarray(mean), jnp.asarray(logvar))
    assert eager.shape == (batch, d) and eager.dtype == jnp.float32
    np.testing.assert_allclose(
        np.asarray(sample_latent_jit(key, logits, mean, logvar)),
        np.asarray(eager),
        rtol=1e-5,
        atol=1e-6,
    )

    keys = [jax.random.key(i) for i in range(3)]
    by_key = np.asarray(
        jax.jit(jax.vmap(sample_latent, in_axes=(0, None, None, None)))(
            jnp.stack(keys), logits, mean, logvar
        )
    )
    assert by_key.shape == (3, batch, d)
    assert not np.allclose(by_key[0], by_key[1])  # different keys, different draws
    for i in range(3):
        single = np.asarray(sample_latent_jit(keys[i], logits, mean, logvar))
        np.testing.assert_allclose(by_key[i], single, rtol=1e-5, atol=1e-6)

    stacked = [[np.asarray(a) for a in _posterior(10 + i, batch, k, d)] for i in range(2)]
    means = np.stack([s[0] for s in stacked])
    logvars = np.stack([s[1] for s in stacked])
    logits2 = np.stack([logits, -logits])
    by_model = np.asarray(
        jax.jit(jax.vmap(sample_latent))(jnp.stack(keys[:2]), logits2, means, logvars)
    )
    assert by_model.shape == (2, batch, d)
    for i in range(2):
        single = np.asarray(sample_latent_jit(keys[i], logits2[i], means[i], logvars[i]))
        np.testing.assert_allclose(by_model[i], single, rtol=1e-5, atol=1e-5)


def test_sample_latent_rejects_bad_shapes():
    """Oracle: the documented shape contract (logits [B,K], mean/logvar [B,K,d])."""
    mean, logvar = _posterior(0, 2, 3, 2)
    with pytest.raises(AssertionError):
        sample_latent(jax.random.key(0), jnp.zeros((2, 4)), mean, logvar)
    with pytest.raises(AssertionError):
        sample_latent(jax.random.key(0), jnp.zeros((2, 3)), mean, logvar[..., :1])


@pytest.mark.parametrize(
    "sampler,args,partitionable",
    [
        (jax.random.normal, (), True),
        (jax.random.gumbel, (), True),
        (jax.random.uniform, (jnp.float32, -2.0, 3.0), True),
        (jax.random.normal, (), False),  # the older threefry numbering gives the same
    ],
)
def test_draw_flat_equals_the_n_d_draw(sampler, args, partitionable):
    """Drawn flat and reshaped, the values are jax.random's own n-D draw's, bit for bit."""
    previous = jax.config.jax_threefry_partitionable
    jax.config.update("jax_threefry_partitionable", partitionable)
    try:
        key = jax.random.key(7)
        for shape in [(5,), (8, 10, 3)]:
            np.testing.assert_array_equal(
                sampling.draw_flat(sampler, key, shape, *args), sampler(key, shape, *args)
            )
    finally:
        jax.config.update("jax_threefry_partitionable", previous)


def test_categorical_equals_jax_random_categorical():
    """The flat Gumbel-max labels are jax.random.categorical's, and their frequencies follow
    the weights (a binomial 5-sigma band)."""
    key = jax.random.key(3)
    logits = jnp.log(jnp.asarray([0.5, 0.2, 0.2, 0.1]))
    labels = sampling.categorical(key, logits, 20000)
    np.testing.assert_array_equal(labels, jax.random.categorical(key, logits, shape=(20000,)))
    assert labels.dtype == jnp.int32
    freq = np.bincount(np.asarray(labels), minlength=4) / 20000
    p = np.asarray([0.5, 0.2, 0.2, 0.1])
    assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / 20000))
