"""Unit checks of the compiled pieces in exon_jax.train."""

import jax
import jax.numpy as jnp
import numpy as np

from exon_jax import models, train


def test_eval_forward_chunks_and_padding_match_one_apply():
    """Chunked evaluation (20 images in chunks of 7: the last one padded) equals one apply."""
    model = models.EXoNModel(models.MLPEncoder(), models.MLPDecoder())
    images = jax.random.randint(jax.random.key(0), (20, 28, 28, 1), 0, 256).astype(jnp.uint8)
    variables = model.init(jax.random.key(1), jnp.zeros((1, 28, 28, 1)))
    state = train.TrainState(
        step=jnp.zeros((), jnp.int32),
        params={"model": variables["params"]},
        batch_stats={},
        opt_state=(),
        key=jax.random.key(2),
        beta=jnp.ones(()),
    )
    chunked = jax.jit(train.make_eval_forward(model, chunk_size=7))(state, images)
    direct = model.apply(variables, images.astype(jnp.float32) / 255.0, method=model.encode)
    for a, b in zip(chunked, direct):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_over_models_modes_agree():
    """vmap, lax.map and the squeezed one-model path compute the same per-model function."""

    def fn(a, b, shared):
        return {"out": jnp.sin(a) * b + shared}

    a, b = jnp.arange(3.0), jnp.array([1.0, 2.0, 3.0])
    expected = np.sin(np.arange(3.0)) * np.array([1.0, 2.0, 3.0]) + 0.5
    for mode in ("vmap", "map"):
        np.testing.assert_allclose(
            train.over_models(fn, 3, mode)(a, b, 0.5)["out"], expected, rtol=1e-6
        )
    single = train.over_models(fn, 1)(a[:1], b[:1], 0.5)["out"]
    np.testing.assert_allclose(single, expected[:1], rtol=1e-6)


# ------------------------------------------------- what the design promises

import chex  # noqa: E402
import optax  # noqa: E402
import pytest  # noqa: E402

from configs import mnist as mnist_config  # noqa: E402
from exon_jax import experiment, parallel  # noqa: E402
from tests.synthetic import synthetic_cifar, synthetic_mnist  # noqa: E402


def _small_experiment(**changes):
    config = mnist_config.get_config()
    config.data.labelled_per_class = 20
    config.train.batch_unlabelled = 200
    config.train.batch_labelled = 40
    for field, value in changes.items():
        section, name = field.split("__")
        config[section][name] = value
    return experiment.build_experiment(config, synthetic_mnist(num_train=800, num_test=100))


def _on_device(exp):
    return (
        experiment.init_states(exp),
        experiment.sharded_hparams(exp),
        experiment.device_data(exp),
    )


def test_scanned_epoch_moves_nothing_between_host_and_device():
    """Under transfer_guard('disallow') a whole compiled epoch runs: the data stay on device."""
    exp = _small_experiment()
    states, hparams, data = _on_device(exp)
    epoch_fn = experiment.compile_epoch(exp)
    key = experiment.epoch_key(exp.spec.data.seed, 0, exp.mesh)
    states, metrics = epoch_fn(states, hparams, data, key)  # compile outside the guard
    key = experiment.epoch_key(exp.spec.data.seed, 1, exp.mesh)
    with jax.transfer_guard("disallow"):
        states, metrics = epoch_fn(states, hparams, data, key)
        jax.block_until_ready(metrics)


def _indexed_step(exp):
    return train.make_indexed_step(train.make_train_step(exp.model, exp.optimizer, exp.settings))


def test_step_and_epoch_trace_once():
    """Three epochs, scanned and stepwise, trace the epoch and the step exactly once each."""
    exp = _small_experiment()
    states, hparams, data = _on_device(exp)
    epoch = chex.assert_max_traces(train.make_train_epoch(_indexed_step(exp), exp.settings), n=1)
    scanned = jax.jit(train.over_models(epoch, 1))
    step = chex.assert_max_traces(_indexed_step(exp), n=1)
    stepwise = train.make_stepwise_epoch(jax.jit(train.over_models(step, 1)), exp.settings)
    for e in range(3):
        key = experiment.epoch_key(exp.spec.data.seed, e, exp.mesh)
        scanned(states, hparams, data, key)
        stepwise(states, hparams, data, key)


def test_stepwise_epoch_equals_scanned_epoch():
    """The Python-driven epoch (conv nets on CPU) trains exactly as the scanned one."""
    exp = _small_experiment()
    states, hparams, data = _on_device(exp)
    key = experiment.epoch_key(exp.spec.data.seed, 0, exp.mesh)
    scanned = jax.jit(
        train.over_models(train.make_train_epoch(_indexed_step(exp), exp.settings), 1)
    )
    stepwise = train.make_stepwise_epoch(
        jax.jit(train.over_models(_indexed_step(exp), 1)), exp.settings
    )
    a, metrics_a = scanned(states, hparams, data, key)
    b, metrics_b = stepwise(states, hparams, data, key)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_allclose(x, y, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(metrics_a["loss"], metrics_b["loss"], rtol=1e-5)


@pytest.mark.parametrize("mode", ["fixed", "learned"])
def test_fixed_and_learned_beta(mode):
    """fixed: beta stays the configured value exactly; learned: log_beta is trained and
    state.beta (the beta of the last step, before its update) is one RMSprop step, at most
    lr * 1/sqrt(1 - 0.9) ~ 3.2e-3 in log beta, from exp(log_beta)."""
    exp = _small_experiment(model__beta_mode=mode, model__beta=0.7)
    states, hparams, data = _on_device(exp)
    epoch_fn = experiment.compile_epoch(exp)
    states, _ = epoch_fn(
        states, hparams, data, experiment.epoch_key(exp.spec.data.seed, 0, exp.mesh)
    )
    beta = float(parallel.to_host(states.beta)[0])
    if mode == "fixed":
        assert beta == np.float32(0.7)
        assert "log_beta" not in states.params
    else:
        log_beta = float(parallel.to_host(states.params["log_beta"])[0])
        assert abs(np.log(beta) - log_beta) <= 3.2e-3
        assert beta != pytest.approx(0.7, rel=1e-4)


def test_supervised_objective_leaves_the_decoder_untouched():
    """objective 'supervised' switches the ELBO off: only the encoder's classifier path learns."""
    exp = _small_experiment(loss__objective="supervised")
    states, hparams, data = _on_device(exp)
    before = parallel.to_host(states.params["model"])
    states, _ = experiment.compile_epoch(exp)(
        states, hparams, data, experiment.epoch_key(exp.spec.data.seed, 0, exp.mesh)
    )
    after = parallel.to_host(states.params["model"])
    for x, y in zip(jax.tree.leaves(before["decoder"]), jax.tree.leaves(after["decoder"])):
        np.testing.assert_array_equal(x, y)
    assert any(
        not np.array_equal(x, y)
        for x, y in zip(jax.tree.leaves(before["encoder"]), jax.tree.leaves(after["encoder"]))
    )


@pytest.mark.slow  # ~20 s of XLA:CPU compiling the CIFAR-10 networks; run with -m slow
def test_classifier_pretraining_changes_only_the_classifier():
    """One pre-training epoch (paper Sec. 4.2): classifier params move, nothing else does."""
    from configs import cifar10

    config = cifar10.get_config()
    config.data.labelled_per_class = 4
    config.train.batch_unlabelled, config.train.batch_labelled = 20, 8
    config.pretrain.batch_size = 20
    exp = experiment.build_experiment(config, synthetic_cifar(num_train=120, num_test=20))
    states, _, data = _on_device(exp)
    optimizer = optax.adam(1e-3)
    epoch = jax.jit(
        train.over_models(
            train.make_classifier_pretrain_epoch(
                exp.model, optimizer, config.pretrain.batch_size, exp.labelled_idx.size
            ),
            1,
        )
    )
    opt_state = jax.jit(jax.vmap(lambda s: optimizer.init(s.params["model"]["classifier"])))(states)
    before = parallel.to_host(states.params["model"])
    states, _, metrics = epoch(
        states, opt_state, data, experiment.epoch_key(config.data.seed, 0, exp.mesh)
    )
    after = parallel.to_host(states.params["model"])
    for part in ("encoder", "decoder"):
        for x, y in zip(jax.tree.leaves(before[part]), jax.tree.leaves(after[part])):
            np.testing.assert_array_equal(x, y)
    assert any(
        not np.array_equal(x, y)
        for x, y in zip(jax.tree.leaves(before["classifier"]), jax.tree.leaves(after["classifier"]))
    )
    assert np.isfinite(parallel.to_host(metrics["loss"])).all()
