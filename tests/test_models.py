"""Tests for exon_jax.models: shapes, dtypes, parameter counts, BatchNorm, bf16 mode."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from exon_jax import models

K = 10


def dense_params(n_in, n_out):
    return n_in * n_out + n_out


def conv_params(size, c_in, c_out):
    return size * size * c_in * c_out + c_out


def norm_params(c):
    return 2 * c  # scale + bias (and likewise mean + var in batch_stats)


def count(tree):
    return sum(leaf.size for leaf in jax.tree.leaves(tree))


def images(key, batch, shape):
    return jax.random.uniform(key, (batch, *shape), jnp.float32)


CASES = {
    "mlp_encoder": (models.MLPEncoder, {}, (28, 28, 1)),
    "mlp_decoder": (models.MLPDecoder, {}, (2,)),
    "conv_encoder": (models.ConvEncoder, {}, (32, 32, 3)),
    "conv_decoder": (models.ConvDecoder, {}, (300,)),
    "classifier": (models.Classifier, {}, (32, 32, 3)),
}


@pytest.fixture(scope="module")
def initialised():
    """name -> (module, variables, input [3, ...])."""
    out = {}
    for i, (name, (cls, kwargs, shape)) in enumerate(CASES.items()):
        module = cls(**kwargs)
        x = images(jax.random.key(100 + i), 3, shape)
        if len(shape) == 1:
            x = 3.0 * jax.random.normal(jax.random.key(200 + i), x.shape)
        out[name] = (module, jax.jit(module.init)(jax.random.key(i), x), x)
    return out


def test_mlp_encoder_shapes_and_params(initialised):
    module, variables, x = initialised["mlp_encoder"]
    logits, mean, logvar = module.apply(variables, x)
    assert logits.shape == (3, K) and mean.shape == (3, K, 2) and logvar.shape == (3, K, 2)
    assert logits.dtype == mean.dtype == logvar.dtype == jnp.float32
    expected = dense_params(784, 200) + dense_params(200, 400) + dense_params(400, K + 2 * K * 2)
    assert expected == 784 * 200 + 200 + 200 * 400 + 400 + 400 * 50 + 50
    assert count(variables["params"]) == expected
    assert set(variables) == {"params"}


def test_mlp_encoder_head_split_order(initialised):
    """logits, then K*d means, then K*d log-variances, each component's d values contiguous."""
    module, variables, x = initialised["mlp_encoder"]
    logits, mean, logvar = module.apply(variables, x)
    p = variables["params"]
    h = x.reshape(3, -1) @ p["hidden_0"]["kernel"] + p["hidden_0"]["bias"]
    h = jnp.where(h > 0, h, 0.01 * h)
    h = h @ p["hidden_1"]["kernel"] + p["hidden_1"]["bias"]
    h = jnp.where(h > 0, h, 0.01 * h)
    head = np.asarray(h @ p["head"]["kernel"] + p["head"]["bias"])
    np.testing.assert_allclose(logits, head[:, :K], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(mean[:, 3, 1], head[:, K + 3 * 2 + 1], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(logvar[:, 7, 0], head[:, K + 2 * K + 7 * 2], rtol=1e-4, atol=1e-5)


def test_mlp_decoder_shapes_range_and_params(initialised):
    module, variables, z = initialised["mlp_decoder"]
    x_hat = module.apply(variables, z)
    assert x_hat.shape == (3, 28, 28, 1) and x_hat.dtype == jnp.float32
    assert jnp.all((x_hat > 0) & (x_hat < 1))
    expected = dense_params(2, 200) + dense_params(200, 400) + dense_params(400, 784)
    assert count(variables["params"]) == expected
    other = models.MLPDecoder(output_shape=(5, 4))
    assert other.apply(other.init(jax.random.key(0), z), z).shape == (3, 5, 4)


def test_conv_encoder_shapes_and_params(initialised):
    module, variables, x = initialised["conv_encoder"]
    mean, logvar = module.apply(variables, x)
    assert mean.shape == logvar.shape == (3, K, 300)
    assert mean.dtype == logvar.dtype == jnp.float32
    expected = (
        conv_params(5, 3, 32)
        + norm_params(32)
        + conv_params(5, 32, 64)
        + norm_params(64)
        + conv_params(3, 64, 128)
        + norm_params(128)
        + conv_params(3, 128, 256)
        + norm_params(256)
        + dense_params(2 * 2 * 256, 1024)
        + norm_params(1024)
        + dense_params(1024, 2 * K * 300)
    )
    assert count(variables["params"]) == expected
    assert count(variables["batch_stats"]) == 2 * (32 + 64 + 128 + 256 + 1024)


def test_conv_decoder_shapes_range_and_params(initialised):
    module, variables, z = initialised["conv_decoder"]
    x_hat, state = module.apply(variables, z, capture_intermediates=True)
    assert x_hat.shape == (3, 32, 32, 3) and x_hat.dtype == jnp.float32
    assert jnp.all((x_hat > 0) & (x_hat < 1))
    inter = state["intermediates"]
    sizes = [inter[f"deconv_{i}"]["__call__"][0].shape[1:] for i in range(5)]
    assert sizes == [(4, 4, 256), (4, 4, 256), (8, 8, 128), (16, 16, 64), (32, 32, 32)]
    expected = (
        dense_params(300, 1024)
        + norm_params(1024)
        + conv_params(5, 256, 256)
        + norm_params(256)
        + conv_params(5, 256, 256)
        + norm_params(256)
        + conv_params(5, 256, 128)
        + norm_params(128)
        + conv_params(5, 128, 64)
        + norm_params(64)
        + conv_params(5, 64, 32)
        + norm_params(32)
        + conv_params(1, 32, 3)
    )
    assert count(variables["params"]) == expected
    assert count(variables["batch_stats"]) == 2 * (1024 + 256 + 256 + 128 + 64 + 32)


def test_classifier_shapes_and_params(initialised):
    module, variables, x = initialised["classifier"]
    logits = module.apply(variables, x)
    assert logits.shape == (3, K) and logits.dtype == jnp.float32
    expected = (
        conv_params(3, 3, 32)
        + conv_params(3, 32, 32)
        + conv_params(3, 32, 64)
        + conv_params(3, 64, 64)
        + conv_params(3, 64, 128)
        + conv_params(3, 128, 128)
        + dense_params(4 * 4 * 128, 128)
        + dense_params(128, K)
    )
    assert count(variables["params"]) == expected
    assert set(variables) == {"params"}


def test_batch_norm_train_updates_running_averages(initialised):
    """Keras momentum 0.99: running = 0.99 * running + 0.01 * batch statistic."""
    module, variables, z = initialised["conv_decoder"]
    x_hat, updates = module.apply(variables, z, train=True, mutable=["batch_stats"])
    assert x_hat.shape == (3, 32, 32, 3)
    p = variables["params"]["hidden"]
    h = np.maximum(np.asarray(z) @ np.asarray(p["kernel"]) + np.asarray(p["bias"]), 0.0)
    stats = updates["batch_stats"]["norm_hidden"]
    np.testing.assert_allclose(stats["mean"], 0.01 * h.mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stats["var"], 0.99 + 0.01 * h.var(0), rtol=1e-4, atol=1e-6)
    for name, old in variables["batch_stats"].items():
        assert not np.allclose(updates["batch_stats"][name]["mean"], old["mean"])


def test_batch_norm_eval_uses_running_averages(initialised):
    module, variables, x = initialised["conv_encoder"]
    _, updates = module.apply(variables, x, train=True, mutable=["batch_stats"])
    variables = {**variables, **updates}
    other = images(jax.random.key(7), 3, (32, 32, 3))
    batch_a = x
    batch_b = jnp.concatenate([x[:1], other[1:]])
    eval_a = module.apply(variables, batch_a)
    eval_b = module.apply(variables, batch_b)
    np.testing.assert_allclose(eval_a[0][0], eval_b[0][0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(eval_a[1][0], eval_b[1][0], rtol=1e-5, atol=1e-5)
    train_a, _ = module.apply(variables, batch_a, train=True, mutable=["batch_stats"])
    train_b, _ = module.apply(variables, batch_b, train=True, mutable=["batch_stats"])
    assert not np.allclose(train_a[0][0], train_b[0][0], rtol=1e-3, atol=1e-3)


def relative_error(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize("name", list(CASES))
def test_bfloat16_compute_matches_float32(initialised, name):
    module, variables, x = initialised[name]
    cls, kwargs, _ = CASES[name]
    reduced = cls(**kwargs, compute_dtype=jnp.bfloat16)
    reduced_variables = jax.eval_shape(reduced.init, jax.random.key(0), x)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(reduced_variables))
    assert jax.tree.structure(reduced_variables) == jax.tree.structure(variables)
    full_out = jax.tree.leaves(module.apply(variables, x))
    reduced_out = jax.tree.leaves(reduced.apply(variables, x))
    for full, low in zip(full_out, reduced_out):
        assert low.dtype == jnp.float32
        assert relative_error(low, full) < 3e-2
    jaxpr = str(jax.make_jaxpr(lambda v: reduced.apply(v, x))(variables))
    assert "bf16" in jaxpr and "preferred_element_type=float32" in jaxpr
    assert "bf16" not in str(jax.make_jaxpr(lambda v: module.apply(v, x))(variables))


def test_bfloat16_gradients_are_float32():
    """bf16-mode gradients are float32, finite, and close to float32 gradients taken at
    the bf16-rounded parameters and inputs (the unrounded point is not a fair oracle:
    rounding the operands alone moves this loss's first-layer gradient by about 10 %)."""
    module = models.MLPEncoder(compute_dtype=jnp.bfloat16)
    x = images(jax.random.key(1), 4, (28, 28, 1))
    variables = jax.jit(module.init)(jax.random.key(0), x)

    def loss(params, inputs, mod):
        logits, mean, logvar = mod.apply({"params": params}, inputs)
        return jnp.sum(logits**2) + jnp.sum(mean**2) + jnp.sum(logvar)

    def round_bf16(tree):
        return jax.tree.map(lambda a: a.astype(jnp.bfloat16).astype(jnp.float32), tree)

    gradient = jax.jit(jax.grad(loss), static_argnums=2)
    grads = gradient(variables["params"], x, module)
    full = gradient(round_bf16(variables["params"]), round_bf16(x), models.MLPEncoder())
    for g, f in zip(jax.tree.leaves(grads), jax.tree.leaves(full)):
        assert g.dtype == jnp.float32 and np.all(np.isfinite(g))
        assert relative_error(g, f) < 3e-2


def test_exon_model_without_classifier(initialised):
    encoder, enc_vars, x = initialised["mlp_encoder"]
    decoder, dec_vars, _ = initialised["mlp_decoder"]
    model = models.EXoNModel(encoder, decoder)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    assert set(variables["params"]) == {"encoder", "decoder"}
    variables = {"params": {"encoder": enc_vars["params"], "decoder": dec_vars["params"]}}
    logits, mean, logvar = model.apply(variables, x, method=models.EXoNModel.encode)
    expected = encoder.apply(enc_vars, x)
    for got, want in zip((logits, mean, logvar), expected):
        np.testing.assert_array_equal(got, want)
    z = mean[:, 0, :]
    x_hat = model.apply(variables, z, method=models.EXoNModel.decode)
    np.testing.assert_array_equal(x_hat, decoder.apply(dec_vars, z))
    *_, x_hat_call = model.apply(variables, x)
    np.testing.assert_array_equal(x_hat_call, x_hat)


def test_exon_model_with_classifier(initialised):
    encoder, enc_vars, x = initialised["conv_encoder"]
    decoder, dec_vars, _ = initialised["conv_decoder"]
    classifier, cls_vars, _ = initialised["classifier"]
    model = models.EXoNModel(encoder, decoder, classifier)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    assert set(variables["params"]) == {"encoder", "decoder", "classifier"}
    assert set(variables["batch_stats"]) == {"encoder", "decoder"}
    variables = {
        "params": {
            "encoder": enc_vars["params"],
            "decoder": dec_vars["params"],
            "classifier": cls_vars["params"],
        },
        "batch_stats": {"encoder": enc_vars["batch_stats"], "decoder": dec_vars["batch_stats"]},
    }
    (logits, mean, logvar), updates = model.apply(
        variables, x, True, method=models.EXoNModel.encode, mutable=["batch_stats"]
    )
    np.testing.assert_array_equal(logits, classifier.apply(cls_vars, x))
    want_mean, want_logvar = encoder.apply(enc_vars, x, train=True, mutable=["batch_stats"])[0]
    np.testing.assert_allclose(mean, want_mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(logvar, want_logvar, rtol=1e-6, atol=1e-6)
    assert set(updates["batch_stats"]) == {"encoder", "decoder"}
    x_hat = model.apply(variables, mean[:, 0, :], method=models.EXoNModel.decode)
    assert x_hat.shape == (3, 32, 32, 3)


def test_exon_model_needs_logits():
    model = models.EXoNModel(models.ConvEncoder(latent_dim=4), models.ConvDecoder())
    with pytest.raises(ValueError, match="encoder must return"):
        jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((2, 32, 32, 3)))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="compute_dtype"):
        models.MLPEncoder(compute_dtype=jnp.float16).init(jax.random.key(0), jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match="z must have shape"):
        models.MLPDecoder().init(jax.random.key(0), jnp.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="x must have shape"):
        models.Classifier().init(jax.random.key(0), jnp.zeros((2, 32, 32)))


@pytest.mark.parametrize(
    "height, width, stride, cin, cout, kernel",
    [
        (2, 2, 2, 16, 8, 5),  # the paper decoder's first layer: patch matmul
        (4, 4, 1, 8, 8, 5),  # kernel larger than the input at stride 1: patch matmul
        (4, 4, 2, 8, 4, 5),
        (8, 8, 2, 4, 4, 5),
        (3, 3, 1, 4, 3, 1),
        (6, 5, 2, 3, 2, 4),  # even kernel, rectangular input
        (5, 7, 3, 3, 2, 5),  # stride 3
        (7, 6, 3, 2, 3, 2),  # kernel smaller than the stride: phases without taps
        (6, 6, 2, 3, 2, 3),
    ],
)
def test_conv_transpose_matches_flax(height, width, stride, cin, cout, kernel):
    """Oracle: flax's nn.ConvTranspose (padding SAME) with the same parameters; both paths,
    outputs and the gradients of input and parameters."""
    x = jax.random.normal(jax.random.key(0), (3, height, width, cin))
    reference = nn.ConvTranspose(cout, (kernel, kernel), strides=(stride, stride), padding="SAME")
    variables = reference.init(jax.random.key(1), x)
    variables = jax.tree.map(
        lambda v: v + 0.1 * jax.random.normal(jax.random.key(2), v.shape), variables
    )
    g = jax.random.normal(jax.random.key(3), (3, height * stride, width * stride, cout))

    def value_and_grads(module):
        return jax.value_and_grad(lambda v, x: jnp.sum(module.apply(v, x) * g), argnums=(0, 1))(
            variables, x
        )

    expected = reference.apply(variables, x)
    expected_value, expected_grads = value_and_grads(reference)
    for path in models.TRANSPOSED_CONV_PATHS:
        ours = models.ConvTranspose(cout, kernel, stride, path=path)
        np.testing.assert_allclose(ours.apply(variables, x), expected, rtol=1e-4, atol=1e-4)
        value, grads = value_and_grads(ours)
        np.testing.assert_allclose(value, expected_value, rtol=1e-4)
        for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(expected_grads)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_unknown_transposed_conv_path_is_one_error():
    x = jnp.zeros((1, 2, 2, 3))
    for make in (
        lambda: models.conv_transpose(4, 3, 2, path="phase"),
        lambda: models.ConvTranspose(4, 3, 2, path="phase").init(jax.random.key(0), x),
    ):
        with pytest.raises(ValueError, match="path must be one of .*got 'phase'"):
            make()


@pytest.mark.parametrize("path", models.TRANSPOSED_CONV_PATHS)
@pytest.mark.parametrize("size", [2, 8])  # patch matmul / convolution in the "phases" path
def test_bfloat16_conv_transpose_matches_float32(path, size):
    """bfloat16 operands on either path: float32 output within bfloat16 rounding of flax's
    float32 nn.ConvTranspose, and the products take bfloat16 operands."""
    x = jax.random.normal(jax.random.key(0), (3, size, size, 16))
    reference = nn.ConvTranspose(8, (5, 5), strides=(2, 2), padding="SAME")
    variables = reference.init(jax.random.key(1), x)
    ours = models.ConvTranspose(8, 5, 2, compute_dtype=jnp.bfloat16, path=path)
    low = ours.apply(variables, x)
    assert low.dtype == jnp.float32
    assert relative_error(low, reference.apply(variables, x)) < 3e-2
    jaxpr = str(jax.make_jaxpr(lambda v: ours.apply(v, x))(variables))
    assert "bf16" in jaxpr and "preferred_element_type=float32" in jaxpr


@pytest.mark.parametrize("kernel, stride, window", [(5, 2, 3), (4, 2, 3), (5, 1, 5), (3, 2, 2)])
def test_phase_conv_transpose_reads_a_small_window_of_the_undilated_input(kernel, stride, window):
    """The sub-pixel form's kernel: every tap used exactly once, in a window of the stated
    size (worked by hand from the SAME padding), and no dilated input in the program."""
    selection, _, _ = models._phase_taps(kernel, stride)
    assert selection.shape == (window, stride, kernel)
    np.testing.assert_array_equal(selection.sum(axis=(0, 1)), np.ones(kernel))
    x = jnp.zeros((2, 8, 8, 3))
    w = jnp.zeros((kernel, kernel, 3, 4))
    text = jax.jit(models.phase_conv_transpose, static_argnums=2).lower(x, w, stride).as_text()
    assert text.count("stablehlo.convolution") == 1
    assert text.count("lhs_dilate = [1, 1]") == 1
    assert f"tensor<{window}x{window}x3x{stride * stride * 4}xf32>) -> tensor<2x8x8x" in text
