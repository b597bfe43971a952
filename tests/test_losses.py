"""Tests for exon_jax.losses against float64 NumPy/SciPy re-derivations of paper eqs. 3, 12, 13, 14."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import integrate, stats
from scipy.special import log_softmax, logsumexp, rel_entr, softmax

from exon_jax import losses, priors
from exon_jax.priors import MixturePrior

# Jitted entry points keep the number of XLA compilations (the test runtime) small.
kl_upper_bound = jax.jit(losses.kl_upper_bound)
exon_objective = jax.jit(losses.exon_objective, static_argnames=("likelihood",))

TERM_KEYS = {
    "loss",
    "elbo",
    "log_likelihood",
    "kl",
    "cross_entropy",
    "beta_penalty",
    "beta",
    "labelled_accuracy",
}


# ---------------------------------------------------------------- numpy oracles


def np_kl_bound(logits, mean, logvar, p_means, p_vars, p_log_weights):
    """Eq. 14 in float64: KL(w || w0) + sum_k w_k KL(N(mu_k, sigma_k^2) || N(mu0_k, sigma0_k^2)).

    Written with standard deviations (log sigma0/sigma + (sigma^2 + dmu^2) / (2 sigma0^2) - 1/2),
    a different algebraic form from the library's.
    """
    logits, mean, logvar = (np.asarray(a, np.float64) for a in (logits, mean, logvar))
    w = softmax(logits, axis=-1)
    w0 = np.exp(np.asarray(p_log_weights, np.float64))
    kl_cat = rel_entr(w, w0).sum(-1)
    sigma = np.exp(0.5 * logvar)
    sigma0 = np.sqrt(np.asarray(p_vars, np.float64))
    dmu = mean - np.asarray(p_means, np.float64)
    kl_gauss = (np.log(sigma0 / sigma) + (sigma**2 + dmu**2) / (2 * sigma0**2) - 0.5).sum(-1)
    return kl_cat + (w * kl_gauss).sum(-1)


def np_mixture_logpdf(z, log_w, means, stds):
    """log sum_k w_k prod_j N(z_j; mean_kj, std_kj) for z [n, d]; means/stds [K, d]."""
    comp = stats.norm.logpdf(z[:, None, :], means[None], stds[None]).sum(-1)
    return logsumexp(log_w[None] + comp, axis=-1)


def mc_kl(rng, logits, mean, logvar, p_means, p_vars, p_log_weights, n):
    """Monte-Carlo KL(q || p) for one example: mean of log q(z) - log p(z), z ~ q; returns (estimate, s.e.)."""
    log_w = log_softmax(np.asarray(logits, np.float64))
    mean = np.asarray(mean, np.float64)
    std = np.exp(0.5 * np.asarray(logvar, np.float64))
    comp = rng.choice(len(log_w), size=n, p=np.exp(log_w))
    z = mean[comp] + std[comp] * rng.standard_normal((n, mean.shape[-1]))
    log_q = np_mixture_logpdf(z, log_w, mean, std)
    log_p = np_mixture_logpdf(
        z,
        np.asarray(p_log_weights, np.float64),
        np.asarray(p_means, np.float64),
        np.sqrt(np.asarray(p_vars, np.float64)),
    )
    ratio = log_q - log_p
    return ratio.mean(), ratio.std(ddof=1) / math.sqrt(n)


def random_prior(rng, k, d, uniform=False):
    means = rng.normal(scale=3.0, size=(k, d))
    variances = rng.uniform(0.5, 3.0, size=(k, d))
    weights = None if uniform else rng.uniform(0.2, 1.0, size=k)
    return priors.make_prior(means, variances, weights)


def random_posterior(rng, b, k, d, logit_scale=1.5):
    logits = rng.normal(scale=logit_scale, size=(b, k)).astype(np.float32)
    mean = rng.normal(scale=3.0, size=(b, k, d)).astype(np.float32)
    logvar = rng.uniform(-1.5, 1.5, size=(b, k, d)).astype(np.float32)
    return logits, mean, logvar


def prior_np(prior):
    return (
        np.asarray(prior.means, np.float64),
        np.asarray(prior.variances, np.float64),
        np.asarray(prior.log_weights, np.float64),
    )


def np_weighted_loglik(x, x_hat, eps):
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    x_hat = np.asarray(x_hat, np.float64).reshape(len(x_hat), -1)
    return stats.norm.logpdf(x, x_hat, np.sqrt(x * (1 - x) + eps)).sum(-1)


def np_gaussian_loglik(x, x_hat, beta):
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    x_hat = np.asarray(x_hat, np.float64).reshape(len(x_hat), -1)
    return stats.norm.logpdf(x, x_hat, math.sqrt(beta)).sum(-1)


def images(rng, shape):
    x = rng.uniform(0.0, 1.0, size=shape).astype(np.float32)
    x_hat = rng.uniform(0.02, 0.98, size=shape).astype(np.float32)
    return x, x_hat


# ---------------------------------------------------------------- KL upper bound


@pytest.mark.parametrize(
    "k,d,uniform", [(2, 2, True), (10, 2, True), (3, 5, False), (4, 300, False)]
)
def test_kl_upper_bound_vs_numpy(k, d, uniform):
    """Oracle: NumPy float64 eq. 14 (rel_entr + std-form Gaussian KL) on random batched inputs."""
    rng = np.random.default_rng(k * 100 + d)
    prior = random_prior(rng, k, d, uniform)
    logits, mean, logvar = random_posterior(rng, 7, k, d)
    got = np.asarray(
        kl_upper_bound(jnp.asarray(logits), jnp.asarray(mean), jnp.asarray(logvar), prior)
    )
    assert got.shape == (7,)
    expected = np_kl_bound(logits, mean, logvar, *prior_np(prior))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_kl_upper_bound_vmap_over_models():
    """Oracle: NumPy eq. 14 per model, for a leading model axis with different priors (vmap)."""
    rng = np.random.default_rng(5)
    batched_prior = jax.vmap(priors.two_component_prior)(jnp.array([8.0, 16.0, 32.0]))
    posts = [random_posterior(rng, 4, 2, 2) for _ in range(3)]
    logits, mean, logvar = (jnp.asarray(np.stack([p[i] for p in posts])) for i in range(3))
    got = np.asarray(jax.jit(jax.vmap(losses.kl_upper_bound))(logits, mean, logvar, batched_prior))
    assert got.shape == (3, 4)
    for i, dist in enumerate([8.0, 16.0, 32.0]):
        p_means = np.array([[-dist / 2, 0.0], [dist / 2, 0.0]])
        expected = np_kl_bound(*posts[i], p_means, np.full((2, 2), 4.0), np.log([0.5, 0.5]))
        np.testing.assert_allclose(got[i], expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("case", ["d2_two_component", "d2_circle", "d5_random", "d2_near_prior"])
def test_kl_upper_bound_dominates_monte_carlo_kl(case):
    """Oracle: Monte-Carlo KL(q||p) between the two mixtures (logsumexp log-densities, scipy) <= bound + 5 s.e."""
    rng = np.random.default_rng(
        {"d2_two_component": 1, "d2_circle": 2, "d5_random": 3, "d2_near_prior": 4}[case]
    )
    if case == "d2_two_component":
        prior = priors.two_component_prior(8.0)
        logits, mean, logvar = random_posterior(rng, 3, 2, 2)
    elif case == "d2_circle":
        prior = priors.circle_prior()
        logits, mean, logvar = random_posterior(rng, 3, 10, 2)
        mean = mean * 4.0
    elif case == "d5_random":
        prior = random_prior(rng, 3, 5)
        logits, mean, logvar = random_posterior(rng, 3, 3, 5)
    else:
        # posterior close to the prior: the bound should also be nearly tight
        prior = priors.circle_prior()
        p_means, p_vars, p_lw = prior_np(prior)
        logits = (p_lw + 0.3 * rng.standard_normal((3, 10))).astype(np.float32)
        mean = (p_means + 0.5 * rng.standard_normal((3, 10, 2))).astype(np.float32)
        logvar = (np.log(p_vars) + 0.2 * rng.standard_normal((3, 10, 2))).astype(np.float32)
    bound = np.asarray(
        kl_upper_bound(jnp.asarray(logits), jnp.asarray(mean), jnp.asarray(logvar), prior)
    )
    for b in range(len(logits)):
        est, se = mc_kl(rng, logits[b], mean[b], logvar[b], *prior_np(prior), n=20_000)
        assert est > -5 * se  # a KL is non-negative
        assert bound[b] >= est - 5 * se, (case, b, bound[b], est, se)


def test_kl_zero_when_posterior_equals_prior():
    """Oracle: KL(p||p) = 0 -- the bound and the Monte-Carlo KL both vanish when q is the prior."""
    rng = np.random.default_rng(6)
    for prior in (priors.circle_prior(), random_prior(rng, 3, 5)):
        k, d = prior.means.shape
        logits = jnp.broadcast_to(prior.log_weights, (2, k)) + 3.0  # shift: softmax-invariant
        mean = jnp.broadcast_to(prior.means, (2, k, d))
        logvar = jnp.broadcast_to(jnp.log(prior.variances), (2, k, d))
        bound = np.asarray(kl_upper_bound(logits, mean, logvar, prior))
        np.testing.assert_allclose(bound, 0.0, atol=1e-5)
        est, se = mc_kl(rng, logits[0], mean[0], logvar[0], *prior_np(prior), n=2_000)
        assert abs(est) < 1e-6 and se < 1e-6  # log q == log p pointwise


def test_kl_bound_equals_gaussian_kl_when_k_is_one():
    """Oracle: K = 1 -- exact KL(N(mu, s^2) || N(mu0, s0^2)) by scipy.integrate.quad per dimension."""
    rng = np.random.default_rng(7)
    d = 3
    prior = random_prior(rng, 1, d)
    logits, mean, logvar = random_posterior(rng, 2, 1, d)
    got = np.asarray(
        kl_upper_bound(jnp.asarray(logits), jnp.asarray(mean), jnp.asarray(logvar), prior)
    )
    p_means, p_vars, _ = prior_np(prior)
    for b in range(2):
        total = 0.0
        for j in range(d):
            q = stats.norm(mean[b, 0, j], math.exp(0.5 * logvar[b, 0, j]))
            p = stats.norm(p_means[0, j], math.sqrt(p_vars[0, j]))
            lo, hi = q.mean() - 12 * q.std(), q.mean() + 12 * q.std()
            total += integrate.quad(
                lambda t: q.pdf(t) * (q.logpdf(t) - p.logpdf(t)),
                lo,
                hi,
                epsabs=1e-12,
                epsrel=1e-10,
                limit=200,
            )[0]
        np.testing.assert_allclose(got[b], total, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- likelihoods


@pytest.mark.parametrize("beta", [0.05, 1.0, 2.5])
def test_gaussian_log_likelihood_vs_scipy(beta):
    """Oracle: scipy.stats.norm.logpdf(x, x_hat, sqrt(beta)) summed over all pixels (eq. 3)."""
    rng = np.random.default_rng(8)
    x, x_hat = images(rng, (5, 4, 5, 3))
    got = np.asarray(losses.gaussian_log_likelihood(jnp.asarray(x), jnp.asarray(x_hat), beta))
    assert got.shape == (5,)
    np.testing.assert_allclose(got, np_gaussian_loglik(x, x_hat, beta), rtol=1e-5)


@pytest.mark.parametrize("eps", [0.02, 0.1])
def test_weighted_gaussian_log_likelihood_vs_scipy(eps):
    """Oracle: scipy norm.logpdf with per-pixel variance x(1-x)+eps, summed (eq. 13); constant = 1/2 sum log(2 pi s)."""
    rng = np.random.default_rng(9)
    x, x_hat = images(rng, (5, 4, 4, 3))
    x[0, 0, 0] = [0.0, 1.0, 0.5]  # the extremes of x(1-x)
    full = np.asarray(
        losses.weighted_gaussian_log_likelihood(jnp.asarray(x), jnp.asarray(x_hat), eps)
    )
    assert full.shape == (5,)
    np.testing.assert_allclose(full, np_weighted_loglik(x, x_hat, eps), rtol=1e-5)

    no_const = np.asarray(
        losses.weighted_gaussian_log_likelihood(
            jnp.asarray(x), jnp.asarray(x_hat), eps, include_constant=False
        )
    )
    s = x.reshape(5, -1).astype(np.float64) * (1 - x.reshape(5, -1)) + eps
    constant = 0.5 * np.log(2 * np.pi * s).sum(-1)
    np.testing.assert_allclose(full - no_const, -constant, rtol=1e-5, atol=1e-5)

    def total(xh, include_constant):
        return jnp.sum(
            losses.weighted_gaussian_log_likelihood(
                jnp.asarray(x), xh, eps, include_constant=include_constant
            )
        )

    g_full = np.asarray(jax.grad(total)(jnp.asarray(x_hat), True))
    g_none = np.asarray(jax.grad(total)(jnp.asarray(x_hat), False))
    np.testing.assert_array_equal(g_full, g_none)
    # analytic d/dx_hat = (x - x_hat) / s
    np.testing.assert_allclose(g_full, ((x - x_hat) / s.reshape(x.shape)), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- beta


def _beta_objective(sq_err, m, lambda2, xp):
    """f(beta) = mean_i[-||x_i - x_hat_i||^2/(2 beta) - m/2 log(2 pi beta)] - lambda2 m/(2 beta).

    sq_err: [B] per-example squared errors; beta: any shape, f broadcasts over it.
    """

    def f(beta):
        b = xp.asarray(beta)[..., None]
        per_example = -sq_err / (2 * b) - 0.5 * m * xp.log(2 * np.pi * b)
        return xp.mean(per_example, axis=-1) - lambda2 * m / (2 * xp.asarray(beta))

    return f


@pytest.mark.parametrize("lambda2", [0.0, 0.3, 1.1])
def test_optimal_beta_maximises_eq12(lambda2):
    """Oracle: argmax of the beta-dependent part of eq. 12 on a fine grid, and jax.grad of it ~0 at beta_hat."""
    rng = np.random.default_rng(10)
    x, x_hat = images(rng, (8, 7, 7))
    m = 49
    beta_hat = float(losses.optimal_beta(jnp.asarray(x), jnp.asarray(x_hat), lambda2))
    sq_err = ((x.astype(np.float64) - x_hat) ** 2).reshape(8, -1).sum(-1)

    grid = np.linspace(0.01, 2.5, 250_001)  # spacing 1e-5
    f_np = _beta_objective(sq_err, m, lambda2, np)
    values = f_np(grid)
    best = grid[np.argmax(values)]
    assert abs(beta_hat - best) <= 2e-5, (beta_hat, best)

    f_jnp = _beta_objective(jnp.asarray(sq_err, jnp.float32), m, lambda2, jnp)
    slope = float(jax.grad(f_jnp)(jnp.float32(beta_hat)))
    scale = m / (2 * beta_hat)  # size of each of the two terms of f'
    assert abs(slope) < 1e-4 * scale, (slope, scale)
    # strictly a maximum: nearby betas are worse
    for factor in (0.9, 1.1):
        assert f_np(np.array([beta_hat * factor]))[0] < f_np(np.array([beta_hat]))[0]


def test_optimal_beta_stationary_point_of_exon_objective():
    """Oracle: d(loss)/d(beta) of exon_objective (gaussian) vanishes at optimal_beta (eq. 12 optimum)."""
    rng = np.random.default_rng(11)
    b, k, d = 6, 3, 2
    x, x_hat = images(rng, (b, 5, 5))
    logits, mean, logvar = random_posterior(rng, b, k, d)
    labels = jnp.asarray(rng.integers(0, k, size=b))
    labelled = jnp.asarray([1, 0, 1, 0, 0, 1], jnp.float32)
    prior = random_prior(rng, k, d)
    lambda2 = 1.1
    beta_hat = losses.optimal_beta(jnp.asarray(x), jnp.asarray(x_hat), lambda2)

    def loss(beta):
        return exon_objective(
            jnp.asarray(x),
            jnp.asarray(x_hat),
            jnp.asarray(logits),
            jnp.asarray(mean),
            jnp.asarray(logvar),
            labels,
            labelled,
            prior,
            lambda1=100.0,
            lambda2=lambda2,
            beta=beta,
        )[0]

    slope = float(jax.grad(loss)(beta_hat))
    assert abs(slope) < 1e-4 * 25 / (2 * float(beta_hat)), slope


# ---------------------------------------------------------------- objective


def _objective_inputs(seed, b=8, k=3, d=2, shape=(6, 6)):
    rng = np.random.default_rng(seed)
    x, x_hat = images(rng, (b,) + shape)
    logits, mean, logvar = random_posterior(rng, b, k, d)
    labels = rng.integers(0, k, size=b).astype(np.int32)
    labelled = np.zeros(b, bool)
    labelled[rng.choice(b, size=b // 2 - 1, replace=False)] = True
    # make sure some labelled predictions are right and some wrong
    logits[np.flatnonzero(labelled)[0], labels[np.flatnonzero(labelled)[0]]] += 10.0
    prior = random_prior(rng, k, d)
    return dict(
        x=x,
        x_hat=x_hat,
        logits=logits,
        mean=mean,
        logvar=logvar,
        labels=labels,
        labelled=labelled,
        prior=prior,
    )


def _call(inp, **kw):
    j = {key: (jnp.asarray(v) if isinstance(v, np.ndarray) else v) for key, v in inp.items()}
    return exon_objective(
        j["x"],
        j["x_hat"],
        j["logits"],
        j["mean"],
        j["logvar"],
        j["labels"],
        j["labelled"],
        j["prior"],
        **kw,
    )


@pytest.mark.parametrize("likelihood", ["gaussian", "weighted_gaussian"])
def test_exon_objective_vs_numpy_eq12(likelihood):
    """Oracle: -(eq. 12) in NumPy float64: mean(loglik - KLu) + (l1+1) mean_labelled log w(y|x) - l2 m/(2 beta)."""
    inp = _objective_inputs(12)
    lambda1, lambda2, beta, eps = 100.0, 1.1, 0.7, 0.05
    loss, terms = _call(
        inp, lambda1=lambda1, lambda2=lambda2, beta=beta, epsilon=eps, likelihood=likelihood
    )
    m = 36
    if likelihood == "gaussian":
        loglik = np_gaussian_loglik(inp["x"], inp["x_hat"], beta)
        penalty = lambda2 * m / (2 * beta)
    else:
        loglik = np_weighted_loglik(inp["x"], inp["x_hat"], eps)
        penalty = 0.0  # beta and lambda2 are not used with eq. 13
    kl = np_kl_bound(inp["logits"], inp["mean"], inp["logvar"], *prior_np(inp["prior"]))
    lab = inp["labelled"]
    log_w = log_softmax(inp["logits"].astype(np.float64), axis=-1)
    log_w_y = log_w[np.arange(len(lab)), inp["labels"]]
    ce = -log_w_y[lab].mean()
    elbo = (loglik - kl).mean()
    objective = elbo - (lambda1 + 1) * ce - penalty
    accuracy = (inp["logits"].argmax(-1) == inp["labels"])[lab].mean()
    assert 0 < accuracy < 1  # the fixture has right and wrong labelled predictions

    np.testing.assert_allclose(float(loss), -objective, rtol=1e-5)
    assert set(terms) == TERM_KEYS
    expected = {
        "loss": -objective,
        "elbo": elbo,
        "log_likelihood": loglik.mean(),
        "kl": kl.mean(),
        "cross_entropy": ce,
        "beta_penalty": penalty,
        "labelled_accuracy": accuracy,
    }
    for key, value in expected.items():
        np.testing.assert_allclose(float(terms[key]), value, rtol=1e-5, atol=1e-6, err_msg=key)
    if likelihood == "gaussian":
        np.testing.assert_allclose(float(terms["beta"]), beta, rtol=1e-7)
    for key, value in terms.items():
        assert jnp.shape(value) == (), key


def test_weighted_objective_ignores_beta_and_lambda2():
    """Oracle: eq. 13 has no beta -- the weighted-Gaussian loss is unchanged by beta and lambda2."""
    inp = _objective_inputs(13)
    a, _ = _call(inp, lambda1=10.0, lambda2=0.0, beta=1.0, likelihood="weighted_gaussian")
    b, _ = _call(inp, lambda1=10.0, lambda2=5.0, beta=0.01, likelihood="weighted_gaussian")
    assert float(a) == float(b)


def test_unknown_likelihood_rejected():
    """Oracle: the documented likelihood names."""
    with pytest.raises(ValueError):
        _call(_objective_inputs(14), lambda1=1.0, likelihood="bernoulli")


@pytest.mark.parametrize("likelihood", ["gaussian", "weighted_gaussian"])
def test_cross_entropy_uses_only_labelled(likelihood):
    """Oracle: eq. 12 sums log w(y_i|x_i) over I_l only -- relabelling unlabelled examples changes nothing."""
    inp = _objective_inputs(15)
    k = inp["logits"].shape[1]
    base_loss, base_terms = _call(inp, lambda1=100.0, lambda2=1.1, beta=0.5, likelihood=likelihood)
    other = dict(inp)
    other["labels"] = np.where(inp["labelled"], inp["labels"], (inp["labels"] + 1) % k).astype(
        np.int32
    )
    assert np.any(other["labels"] != inp["labels"])
    loss, terms = _call(other, lambda1=100.0, lambda2=1.1, beta=0.5, likelihood=likelihood)
    assert float(loss) == float(base_loss)
    for key in TERM_KEYS:
        assert float(terms[key]) == float(base_terms[key]), key
    # bool mask and {0, 1} float mask agree
    as_float = dict(inp, labelled=inp["labelled"].astype(np.float32))
    np.testing.assert_allclose(
        float(_call(as_float, lambda1=100.0, lambda2=1.1, beta=0.5, likelihood=likelihood)[0]),
        float(base_loss),
        rtol=1e-6,
    )
    # while relabelling a labelled example does change the loss
    flipped = dict(inp)
    flipped["labels"] = np.where(inp["labelled"], (inp["labels"] + 1) % k, inp["labels"]).astype(
        np.int32
    )
    flipped_loss = _call(flipped, lambda1=100.0, lambda2=1.1, beta=0.5, likelihood=likelihood)[0]
    assert float(flipped_loss) != float(base_loss)


@pytest.mark.parametrize("mode", ["eager", "jit"])
@pytest.mark.parametrize("sentinel", ["minus_one", "num_classes"])
def test_unlabelled_sentinel_labels_are_ignored(sentinel, mode):
    """Oracle: docstring 'labels ... ignored where not labelled' -- any int (e.g. -1 or K) on unlabelled rows is harmless."""
    inp = _objective_inputs(16)
    k = inp["logits"].shape[1]
    value = -1 if sentinel == "minus_one" else k
    other = dict(inp, labels=np.where(inp["labelled"], inp["labels"], value).astype(np.int32))
    fn = losses.exon_objective if mode == "eager" else exon_objective

    def loss_of(d):
        return float(
            fn(
                *(
                    jnp.asarray(d[key])
                    for key in ("x", "x_hat", "logits", "mean", "logvar", "labels", "labelled")
                ),
                d["prior"],
                lambda1=100.0,
                lambda2=1.1,
                beta=0.5,
            )[0]
        )

    base_loss, loss = loss_of(inp), loss_of(other)
    assert np.isfinite(loss) and loss == base_loss, (
        f"unlabelled rows with label {value} changed the loss ({mode}): {loss} != {base_loss}"
    )


@pytest.mark.parametrize("likelihood", ["gaussian", "weighted_gaussian"])
def test_objective_numerically_stable(likelihood):
    """Oracle: finiteness -- logvar in [-30, 30] and |logits| = 1e4 give finite loss and gradients."""
    rng = np.random.default_rng(17)
    inp = _objective_inputs(17, b=6, k=4, d=3)
    inp["logvar"] = rng.uniform(-30.0, 30.0, size=inp["logvar"].shape).astype(np.float32)
    inp["logvar"][0, 0, 0], inp["logvar"][0, 0, 1] = -30.0, 30.0
    inp["logits"] = (1e4 * rng.choice([-1.0, 1.0], size=inp["logits"].shape)).astype(np.float32)
    inp["logits"][1] = [1e4, -1e4, 1e4, -1e4]

    def loss_fn(logits, mean, logvar, x_hat):
        j = dict(inp, logits=logits, mean=mean, logvar=logvar, x_hat=x_hat)
        return _call(j, lambda1=100.0, lambda2=1.1, beta=0.3, likelihood=likelihood)[0]

    args = tuple(jnp.asarray(inp[key]) for key in ("logits", "mean", "logvar", "x_hat"))
    loss, grads = jax.value_and_grad(loss_fn, argnums=(0, 1, 2, 3))(*args)
    assert np.isfinite(float(loss))
    for g in grads:
        assert np.all(np.isfinite(np.asarray(g)))
    kl = kl_upper_bound(*args[:3], inp["prior"])
    assert np.all(np.isfinite(np.asarray(kl))) and np.all(np.asarray(kl) >= 0)


def test_check_grads_x64():
    """Oracle: finite differences (jax.test_util.check_grads, order 1, rev) in float64."""
    rng = np.random.default_rng(18)
    with jax.enable_x64(True):
        k, d = 3, 2
        prior = MixturePrior(
            jnp.asarray(rng.normal(size=(k, d))),
            jnp.asarray(rng.uniform(0.5, 2.0, size=(k, d))),
            jnp.asarray(np.log(np.full(k, 1.0 / k))),
        )
        logits = jnp.asarray(rng.normal(size=(2, k)))
        mean = jnp.asarray(rng.normal(size=(2, k, d)))
        logvar = jnp.asarray(rng.uniform(-1, 1, size=(2, k, d)))
        assert logits.dtype == jnp.float64
        check_grads(
            jax.jit(lambda a, b, c: losses.kl_upper_bound(a, b, c, prior)),
            (logits, mean, logvar),
            order=1,
            modes=["rev"],
        )
        x = jnp.asarray(rng.uniform(0.1, 0.9, size=(2, 3, 3)))
        x_hat = jnp.asarray(rng.uniform(0.0, 1.0, size=(2, 3, 3)))
        check_grads(
            jax.jit(lambda a, b: losses.weighted_gaussian_log_likelihood(a, b, 0.02)),
            (x, x_hat),
            order=1,
            modes=["rev"],
        )
        check_grads(
            jax.jit(lambda b: losses.gaussian_log_likelihood(x, b, 0.4)),
            (x_hat,),
            order=1,
            modes=["rev"],
        )
