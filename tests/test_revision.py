"""exon_jax.revision: the authors' revised EXoN (an-seunghwan/EXoN_official) as plug-in pieces.

Expected values are hand computations from their code's formulas (schedules, mix-up,
straight-through Gumbel-max, optimiser steps), scipy.ndimage.rotate (the function their
augmentation calls) for the rotation, closed-form Beta moments, and per-layer parameter
counts of their Keras architectures.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.ndimage

from configs import cifar10_4000_revision, mnist100_revision, mnist100_revision_beta_path
from exon_jax import configuration
from exon_jax import data as data_lib
from exon_jax import train as train_lib
from exon_jax.revision import augment, mixup, networks, schedules
from exon_jax.revision import step as rstep
from tests.synthetic import synthetic_cifar, synthetic_mnist

approx = functools.partial(pytest.approx, rel=1e-5)


def _count(tree) -> int:
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


# ----------------------------------------------------------------------------- schedules


def test_rampup_weight_hand_values():
    w = lambda epoch: float(schedules.rampup_weight(epoch, 10, 6000.0))
    assert w(0) == approx(6000.0 * math.exp(-5.0))  # 40.43
    assert w(5) == approx(6000.0 * math.exp(-5.0 * 0.25))  # 1719.1
    assert w(10) == approx(6000.0)
    assert w(57) == approx(6000.0)


def test_mnist_classifier_rampdown_hand_values():
    lr = lambda epoch: float(schedules.rampdown_learning_rate(epoch, 3e-3, 100, 10))
    assert lr(0) == approx(3e-3)
    assert lr(9) == approx(3e-3)
    assert lr(10) == approx(3e-3 * math.exp(-5.0 * 0.1**2))
    assert lr(50) == approx(3e-3 * math.exp(-5.0 * 0.5**2))
    assert lr(99) == approx(3e-3 * math.exp(-5.0 * 0.99**2))


def test_cifar_classifier_milestones_hand_values():
    lr = lambda epoch: float(
        schedules.milestone_learning_rate(epoch, 1e-3, 600, (250, 350, 450, 550), 0.5, 0.2)
    )
    assert lr(0) == approx(2e-4)
    assert lr(1) == approx(1e-3)
    assert lr(249) == approx(1e-3)
    assert lr(250) == approx(5e-4)
    assert lr(350) == approx(2.5e-4)
    assert lr(549) == approx(1.25e-4)
    assert lr(550) == approx(6.25e-5)
    assert lr(575) == approx(6.25e-5 * math.exp(-5.0 * 0.5**2))
    assert lr(599) == approx(6.25e-5 * math.exp(-5.0 * 0.98**2))
    assert float(schedules.warmup_learning_rate(0, 1e-3, 0.1)) == approx(1e-4)
    assert float(schedules.warmup_learning_rate(3, 1e-3, 0.1)) == approx(1e-3)


def test_optimizer_is_adam_plus_decoupled_decay_with_epoch_schedules():
    """One opt_state over {'model': ...}; constant unit gradients make each Adam step
    g / (|g| + 1e-7) = 1 (to 1e-7), so a step moves theta by -lr (encoder/decoder) and by
    -lr (1 + wd * theta) (classifier, Keras' decay on the pre-step weights)."""
    rs = rstep.revision_settings(cifar10_4000_revision.get_config())
    opt = rstep.build_revision_optimizer(rs, steps_per_epoch=2)
    params = {
        "model": {
            "encoder": {"w": jnp.ones(3)},
            "decoder": {"w": jnp.ones(2)},
            "classifier": {"w": jnp.ones(4)},
        }
    }
    state = opt.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    expected_enc, expected_cls = 1.0, 1.0
    for count in range(4):
        epoch = count // 2
        lr_ae = 1e-3 * (0.1 if epoch == 0 else 1.0)
        lr_cls = 1e-3 * (0.2 if epoch == 0 else 1.0)
        updates, state = opt.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        expected_enc -= lr_ae
        expected_cls -= lr_cls * (1.0 + 5e-4 * expected_cls)
        np.testing.assert_allclose(params["model"]["encoder"]["w"], expected_enc, rtol=1e-6)
        np.testing.assert_allclose(params["model"]["decoder"]["w"], expected_enc, rtol=1e-6)
        np.testing.assert_allclose(params["model"]["classifier"]["w"], expected_cls, rtol=1e-6)


# ------------------------------------------------------------- mix-up and Gumbel-max


def test_mixup_hand_values():
    images = jnp.asarray([0.0, 10.0, 20.0]).reshape(3, 1, 1, 1)
    targets = jnp.eye(3)
    mixed, shuffled = mixup.mixup(images, targets, jnp.float32(0.25), jnp.asarray([2, 0, 1]))
    np.testing.assert_allclose(mixed.ravel(), [5.0, 7.5, 17.5])  # 0.25 x[perm] + 0.75 x
    np.testing.assert_array_equal(shuffled, np.eye(3)[[2, 0, 1]])


def test_mixup_cross_entropy_hand_value():
    log_probs = jnp.log(jnp.asarray([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]))
    targets = jnp.asarray([[1.0, 0, 0], [0, 1.0, 0]])
    shuffled = jnp.asarray([[0, 1.0, 0], [1.0, 0, 0]])
    expected = -(0.3 * math.log(0.25) + 0.7 * math.log(0.5)) - (
        0.3 * math.log(0.1) + 0.7 * math.log(0.8)
    )
    got = mixup.mixup_cross_entropy(log_probs, targets, shuffled, jnp.float32(0.3))
    assert float(got) == approx(expected)


def test_clipped_log_prob_floors_at_1e_minus_10():
    got = mixup.clipped_log_prob(jnp.asarray([[0.0, -100.0], [0.0, 0.0]]))
    np.testing.assert_allclose(
        got, [[0.0, math.log(1e-10)], [math.log(0.5), math.log(0.5)]], rtol=1e-6
    )


def test_beta_pair_matches_beta_moments():
    """Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)); 0.2083 for a = 0.1, 0.05 for a = 2."""
    draws = jax.vmap(lambda k: mixup.beta_pair(k, 0.1, 2.0))(
        jax.random.split(jax.random.key(0), 20000)
    )
    assert draws.shape == (20000, 2)
    assert float(draws.min()) >= 0.0 and float(draws.max()) <= 1.0
    np.testing.assert_allclose(draws.mean(0), [0.5, 0.5], atol=0.015)
    np.testing.assert_allclose(draws.var(0), [1 / 4.8, 1 / 20], rtol=0.05)


def test_gumbel_max_hard_forward_and_straight_through_gradient():
    """g(u) = -log(-log u): g(.9) = 2.2504, g(.1) = -0.8340, g(.5) = 0.3665.
    Row 0: log(.2, .5, .3) + g(.9, .1, .5) = (0.641, -1.527, -0.837) -> class 0.
    Row 1: log(.2, .5, .3) + g(.1, .9, .5) = (-2.443, 1.557, -0.837) -> class 1.
    Gradient of sum c * y w.r.t. p: c / p (the surrogate is log p + g)."""
    probs = jnp.asarray([[0.2, 0.5, 0.3], [0.2, 0.5, 0.3]])
    uniform = jnp.asarray([[0.9, 0.1, 0.5], [0.1, 0.9, 0.5]])
    y = mixup.gumbel_max_hard(probs, uniform)
    np.testing.assert_array_equal(y, [[1.0, 0, 0], [0, 1.0, 0]])
    c = jnp.asarray([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    grad = jax.grad(lambda p: jnp.sum(c * mixup.gumbel_max_hard(p, uniform)))(probs)
    np.testing.assert_allclose(grad, [[5.0, 4.0, 10.0], [5.0, 4.0, 10.0]], rtol=1e-5)


# ----------------------------------------------------------------------- augmentation


def test_rotate_matches_scipy_bilinear_nearest():
    """Their augmentation calls scipy.ndimage.rotate (mode 'nearest'); ours is its order-1
    version about the centre (their reshape=True + centre crop is the same map)."""
    image = np.random.default_rng(0).uniform(-1, 1, (28, 28, 1)).astype(np.float32)
    for degrees in (-25, -7, 13, 24, 90):
        expected = scipy.ndimage.rotate(
            image, degrees, axes=(0, 1), reshape=False, order=1, mode="nearest"
        )
        np.testing.assert_allclose(augment.rotate(jnp.asarray(image), degrees), expected, atol=1e-4)
    np.testing.assert_allclose(
        augment.rotate(jnp.asarray(image), 90)[..., 0], np.rot90(image[..., 0]), atol=1e-4
    )


def test_translate_hand_values():
    image = jnp.arange(16.0).reshape(4, 4, 1)
    out = np.asarray(augment.translate(image, 1, -2, 4, -1.0))[..., 0]
    expected = np.full((4, 4), -1.0)
    expected[1:, :2] = np.arange(16.0).reshape(4, 4)[:3, 2:]  # out[i, j] = in[i - 1, j + 2]
    np.testing.assert_array_equal(out, expected)


def test_mnist_augment_batch_keeps_background_and_range():
    images = -jnp.ones((6, 28, 28, 1))
    out = augment.augment_batch(jax.random.key(1), images, "mnist")
    np.testing.assert_allclose(out, -1.0, atol=1e-6)  # interpolation of -1s, to rounding
    images = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (6, 28, 28, 1)), jnp.float32)
    out = augment.augment_batch(jax.random.key(2), images, "mnist")
    assert out.shape == images.shape
    assert float(out.min()) >= -1.0 and float(out.max()) <= 1.0
    assert not np.allclose(out, images)


def test_cifar_augment_is_a_flip_and_crop_of_the_reflect_padded_image():
    image = np.random.default_rng(3).uniform(-1, 1, (32, 32, 3)).astype(np.float32)
    out = np.asarray(augment.augment_batch(jax.random.key(4), jnp.asarray(image)[None], "cifar"))[0]
    candidates = []
    for flipped in (image, image[:, ::-1]):
        padded = np.pad(flipped, ((2, 2), (2, 2), (0, 0)), mode="reflect")
        candidates += [padded[i : i + 32, j : j + 32] for i in range(5) for j in range(5)]
    assert any(np.array_equal(out, c) for c in candidates)


# --------------------------------------------------------------------------- networks


@pytest.mark.slow  # ~10 s: builds every network of the revision
def test_mnist_networks_shapes_and_parameter_counts():
    model = networks.mnist_revision_model()
    variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((2, 28, 28, 1)))
    params = variables["params"]
    # mnist/model.py Encoder: 784-256-128 + 10 mean heads and 10 log-variance heads Dense(2).
    assert _count(params["encoder"]) == (784 * 256 + 256) + (256 * 128 + 128) + 2 * 10 * (
        128 * 2 + 2
    )
    # Decoder 2-128-256-784.
    assert _count(params["decoder"]) == (2 * 128 + 128) + (128 * 256 + 256) + (256 * 784 + 784)
    # Classifier: conv 5x5 1->32, 3x3 32->64, 3x3 64->128, Dense 128->64, Dense 64->10,
    # BatchNorm (gamma, beta) after each conv and the hidden Dense.
    convs = (5 * 5 * 1 * 32 + 32) + (3 * 3 * 32 * 64 + 64) + (3 * 3 * 64 * 128 + 128)
    dense = (128 * 64 + 64) + (64 * 10 + 10)
    norms = 2 * (32 + 64 + 128 + 64)
    assert _count(params["classifier"]) == convs + dense + norms == 102666
    assert _count(variables["batch_stats"]) == norms
    x = jnp.asarray(np.random.default_rng(0).uniform(0, 1, (3, 28, 28, 1)), jnp.float32)
    real = model.init(jax.random.key(0), x)
    logits, mean, logvar, x_hat = model.apply(real, x)
    assert logits.shape == (3, 10) and mean.shape == logvar.shape == (3, 10, 2)
    assert x_hat.shape == (3, 28, 28, 1)
    assert float(x_hat.min()) >= 0.0 and float(x_hat.max()) <= 1.0
    # decode is the tanh decoder mapped from [-1, 1] to [0, 1].
    z = mean[:, 0]
    np.testing.assert_allclose(
        model.apply(real, z, method=model.decode),
        (model.apply(real, z, method=model.decode_signed) + 1) / 2,
        rtol=1e-6,
    )


def test_cifar_decoder_phases_equal_flax_conv_transpose():
    """The CIFAR-10 decoder with its transposed convolutions in sub-pixel form (CPU:
    `backend.transposed_conv_path`) has flax nn.ConvTranspose's parameters and, with the
    same parameters, its outputs and gradients to float32 rounding; the initial parameters
    are the same draws."""
    z = jax.random.normal(jax.random.key(0), (3, 256))
    stock = networks.CIFARDecoder()
    phases = networks.CIFARDecoder(transposed_conv="phases")
    variables = stock.init(jax.random.key(1), z)
    phases_init = phases.init(jax.random.key(1), z)
    assert jax.tree.structure(phases_init) == jax.tree.structure(variables)
    for a, b in zip(jax.tree.leaves(phases_init), jax.tree.leaves(variables)):
        np.testing.assert_array_equal(a, b)
    g = jax.random.normal(jax.random.key(2), (3, 32, 32, 3))

    def loss(module):
        def value(params):
            out, _ = module.apply(
                {"params": params, "batch_stats": variables["batch_stats"]},
                z,
                train=True,
                mutable=["batch_stats"],
            )
            return jnp.sum(out * g)

        return jax.jit(jax.value_and_grad(value))

    (value, grads), (ref_value, ref_grads) = (
        loss(phases)(variables["params"]),
        loss(stock)(variables["params"]),
    )
    np.testing.assert_allclose(value, ref_value, rtol=1e-5)
    for name, ref_layer in ref_grads.items():
        # A bias before BatchNorm has a true gradient of 0: its rounding is judged against
        # the layer's largest gradient.
        scale = max(float(np.abs(leaf).max()) for leaf in jax.tree.leaves(ref_layer))
        for a, b in zip(jax.tree.leaves(grads[name]), jax.tree.leaves(ref_layer)):
            np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5 * scale, err_msg=name)
    # In sub-pixel form no layer convolves a dilated input; every input is at least as
    # large as its (phase) kernel, so all five stay convolutions.
    for module, dilated, convolutions in ((stock, 3, 5), (phases, 0, 5)):
        hlo = jax.jit(module.apply).lower(variables, z).as_text()
        assert hlo.count("lhs_dilate = [2, 2]") == dilated
        assert hlo.count("stablehlo.convolution") == convolutions


def test_cifar_networks_parameter_counts():
    model = networks.cifar_revision_model()
    variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((2, 32, 32, 3)))
    params = variables["params"]
    # model.py Encoder: conv 5x5 3->32 s2, 4x4 32->64 s2, 4x4 64->128 s2, 4x4 128->256 s1,
    # Dense 4*4*256 -> 1024, BatchNorm after each, heads 2 x 10 x Dense(1024 -> 256).
    enc = (
        (5 * 5 * 3 * 32 + 32)
        + (4 * 4 * 32 * 64 + 64)
        + (4 * 4 * 64 * 128 + 128)
        + (4 * 4 * 128 * 256 + 256)
        + (4096 * 1024 + 1024)
        + 2 * (32 + 64 + 128 + 256 + 1024)
        + 2 * 10 * (1024 * 256 + 256)
    )
    assert _count(params["encoder"]) == enc
    # Decoder: Dense 256 -> 4*4*512, convT 5x5 512->256, 256->128, 128->64, 64->32, conv 4x4 32->3.
    dec = (
        (256 * 8192 + 8192)
        + (25 * 512 * 256 + 256)
        + (25 * 256 * 128 + 128)
        + (25 * 128 * 64 + 64)
        + (25 * 64 * 32 + 32)
        + (16 * 32 * 3 + 3)
        + 2 * (8192 + 256 + 128 + 64 + 32)
    )
    assert _count(params["decoder"]) == dec
    # Classifier: 3x3 convs 3->128->128->128, 128->256->256->256, 256->512->256->128, Dense 128->10.
    widths = (3, 128, 128, 128, 256, 256, 256, 512, 256, 128)
    cls = sum(9 * a * b + b + 2 * b for a, b in zip(widths[:-1], widths[1:])) + (128 * 10 + 10)
    assert _count(params["classifier"]) == cls
    out = jax.eval_shape(
        functools.partial(model.apply, method=model.__call__), variables, jnp.zeros((2, 32, 32, 3))
    )
    assert [o.shape for o in out] == [(2, 10), (2, 10, 256), (2, 10, 256), (2, 32, 32, 3)]


# ------------------------------------------------------------------ configs, settings


def test_configs_carry_their_settings():
    mnist_cfg = mnist100_revision.get_config()
    assert mnist_cfg.method == "revision" and mnist_cfg.data.labelled_per_class == 10
    assert mnist_cfg.data.validation == 5000 and mnist_cfg.loss.lambda1 == 6000
    assert (mnist_cfg.train.batch_unlabelled, mnist_cfg.train.batch_labelled) == (96, 32)
    assert tuple(mnist100_revision_beta_path.get_config().sweep.beta) == (
        0.1,
        0.25,
        0.5,
        0.75,
        1,
        5,
        10,
        50,
    )
    cifar_cfg = cifar10_4000_revision.get_config()
    assert cifar_cfg.model.beta == 0.05 and cifar_cfg.data.labelled_per_class == 400
    prior = configuration.build_prior(cifar_cfg, 10)
    np.testing.assert_array_equal(prior.means[:, :10], np.eye(10))
    np.testing.assert_allclose(prior.variances[0, :12], [0.1] * 10 + [1.0, 1.0])
    with pytest.raises(ValueError, match="revision.network"):
        rstep.RevisionSettings(network="resnet")


# ------------------------------------------------------------------- training steps

NUM_UNLABELLED_BATCH, NUM_LABELLED_BATCH = 16, 8


def _setup(dataset, config, per_class, batch_u, batch_l, image_shape):
    labelled, unlabelled = data_lib.labelled_split(dataset.train.labels, per_class, 0)
    rs = rstep.revision_settings(config)
    settings = train_lib.TrainSettings(
        beta_mode="fixed",
        batch_unlabelled=batch_u,
        batch_labelled=batch_l,
        num_unlabelled=len(unlabelled),
        num_labelled=len(labelled),
    )
    model = rstep.build_revision_model(rs, 10, image_shape)
    optimizer = rstep.build_revision_optimizer(rs, settings.steps_per_epoch)
    hparams = configuration.build_hparams(config, 10)
    data = train_lib.DeviceData(
        jnp.asarray(dataset.train.images),
        jnp.asarray(dataset.train.labels),
        jnp.asarray(labelled),
        jnp.asarray(unlabelled),
    )
    state = train_lib.create_train_state(
        jax.random.key(0), model, optimizer, hparams, settings, image_shape
    )
    return rs, settings, model, optimizer, hparams, data, state


@pytest.fixture(scope="module")
def mnist_run():
    config = mnist100_revision.get_config()
    setup = _setup(
        synthetic_mnist(num_train=420, num_test=10),
        config,
        10,
        NUM_UNLABELLED_BATCH,
        NUM_LABELLED_BATCH,
        (28, 28, 1),
    )
    rs, settings, model, optimizer, hparams, data, state = setup
    epoch = train_lib.make_train_epoch(
        train_lib.make_indexed_step(rstep.make_revision_train_step(model, optimizer, settings, rs)),
        settings,
    )
    return dict(
        settings=settings,
        model=model,
        hparams=hparams,
        data=data,
        state=state,
        epoch=epoch,
        single=jax.jit(epoch),
        optimizer=optimizer,
        rs=rs,
    )


@pytest.mark.slow  # minutes of XLA:CPU compilation of the conv classifier's gradients
def test_mnist_epochs_lower_the_loss(mnist_run):
    """Three epochs of 20 steps on generated digits-like bars. lambda2 ramps up between
    epochs by design, so the comparison removes the unlabelled mix-up term (lambda2 is
    constant inside an epoch)."""
    state, history = mnist_run["state"], []
    batch = NUM_UNLABELLED_BATCH + NUM_LABELLED_BATCH
    assert mnist_run["settings"].steps_per_epoch == 20
    for e in range(3):
        state, metrics = mnist_run["single"](
            state, mnist_run["hparams"], mnist_run["data"], jax.random.key(100 + e)
        )
        metrics = {k: float(v) for k, v in metrics.items()}
        metrics["loss_without_u"] = (
            metrics["loss"] - metrics["unlabelled_weight"] * batch * metrics["mixup_unlabelled"]
        )
        history.append(metrics)
    assert int(state.step) == 60
    assert all(np.isfinite(m["max_loss"]) for m in history)
    assert history[0]["unlabelled_weight"] == approx(6000 * math.exp(-5))
    assert history[-1]["loss_without_u"] < history[0]["loss_without_u"]
    assert history[-1]["recon"] < history[0]["recon"]
    assert history[-1]["cross_entropy"] < history[0]["cross_entropy"]
    assert history[0]["beta"] == approx(0.1)


@pytest.mark.slow
def test_mnist_vmapped_betas_equal_separate_runs(mnist_run):
    """A two-point beta grid as one vmapped step equals each beta's step on its own.

    Compared: the step's terms and Adam's moments (0.1 g and 0.001 g^2, linear in the
    gradient), not the parameters: Adam moves every parameter by ~lr whatever its
    gradient's size, so a gradient that rounds to exactly 0 in one program and to 5e-7 in
    the other (seen here) is a 0.003 difference in a parameter but nothing in the maths."""
    hparams, settings = mnist_run["hparams"], mnist_run["settings"]
    betas = (0.1, 5.0)
    points = [hparams.replace(beta=jnp.float32(b)) for b in betas]
    state = mnist_run["state"]
    states = [state.replace(key=jax.random.fold_in(state.key, i)) for i in range(2)]
    step = rstep.make_revision_train_step(
        mnist_run["model"], mnist_run["optimizer"], settings, mnist_run["rs"]
    )
    unlabelled, labelled = (
        jnp.arange(settings.batch_unlabelled),
        jnp.arange(settings.batch_labelled),
    )
    batch = train_lib.gather_batch(mnist_run["data"], unlabelled, labelled)
    grid = jax.jit(jax.vmap(step, in_axes=(0, 0, None)))
    grid_states, grid_metrics = grid(
        train_lib.stack_trees(states), train_lib.stack_trees(points), batch
    )
    single = jax.jit(step)
    for i in range(2):
        alone, metrics = single(states[i], points[i], batch)
        assert float(grid_metrics["beta"][i]) == approx(betas[i])
        for name in ("loss", "recon", "kl", "cross_entropy"):
            np.testing.assert_allclose(grid_metrics[name][i], metrics[name], rtol=1e-4)
        # The loss sums lambda1 = 6000-weighted terms in float32: some gradients come out of
        # near-cancelling sums (values on a 2^-14 grid were seen), so the batched and the
        # single program agree to ~2 % there, 4.6e-6 absolute at most; a wrong beta or a
        # mixed-up model axis changes the loss itself, which is checked to 1e-4 above.
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-2, atol=1e-5),
            train_lib.unstack_tree(grid_states.opt_state, i),
            alone.opt_state,
        )
    assert not np.allclose(grid_metrics["loss"][0], grid_metrics["loss"][1])


@pytest.mark.slow  # ~55 s of XLA:CPU compilation of the CIFAR-10 networks
def test_cifar_revision_steps_run():
    """Two steps of the CIFAR-10 networks on generated 32x32x3 data (2 + 2 images a step)."""
    config = cifar10_4000_revision.get_config()
    rs, settings, model, optimizer, hparams, data, state = _setup(
        synthetic_cifar(num_train=40, num_test=10), config, 2, 2, 2, (32, 32, 3)
    )
    step = jax.jit(
        train_lib.make_indexed_step(rstep.make_revision_train_step(model, optimizer, settings, rs))
    )
    new = state
    for i in range(2):
        new, metrics = step(
            new, hparams, data, jnp.asarray([2 * i, 2 * i + 1]), jnp.asarray([i, i + 5])
        )
        assert np.isfinite(float(metrics["loss"]))
    assert int(new.step) == 2
    assert float(metrics["beta"]) == approx(0.05)
    assert float(metrics["autoencoder_lr"]) == approx(1e-4)  # epoch-0 warm-up
    assert float(metrics["classifier_lr"]) == approx(2e-4)
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.params, new.params)
    assert all(jax.tree.leaves(changed))
    assert any(
        jax.tree.leaves(
            jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.batch_stats, new.batch_stats)
        )
    )
