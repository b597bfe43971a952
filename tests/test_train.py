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
    state = train.TrainState(step=jnp.zeros((), jnp.int32), params={"model": variables["params"]},
                             batch_stats={}, opt_state=(), key=jax.random.key(2),
                             beta=jnp.ones(()))
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
        np.testing.assert_allclose(train.over_models(fn, 3, mode)(a, b, 0.5)["out"], expected,
                                   rtol=1e-6)
    single = train.over_models(fn, 1)(a[:1], b[:1], 0.5)["out"]
    np.testing.assert_allclose(single, expected[:1], rtol=1e-6)
