"""Plain-flax reference of the CIFAR-10 networks (paper Tables 1-2), for FLOP counting only.

The same architecture as exon_jax.models.ConvEncoder / ConvDecoder / Classifier, written
with flax's stock nn.Conv, nn.ConvTranspose, nn.Dense and nn.BatchNorm, i.e. with plain
XLA convolutions. XLA's cost analysis of a plain convolution counts only the taps that
hit real input (no padding, no zeros of a transposed conv's input dilation), so the
FLOP count of a train step built on these networks is the step's useful arithmetic,
whatever implementation exon_jax itself uses (e.g. explicit-patch matmuls, which XLA
counts with their zeros). It is never executed by the benchmarks, only lowered.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn


def _bn(train: bool):
    return nn.BatchNorm(use_running_average=not train, momentum=0.99, epsilon=1e-3)


class RefConvEncoder(nn.Module):
    num_classes: int = 10
    latent_dim: int = 300

    @nn.compact
    def __call__(self, x, train: bool = False):
        k, d = self.num_classes, self.latent_dim
        h = x.astype(jnp.float32)
        for features, size in ((32, 5), (64, 5), (128, 3), (256, 3)):
            h = nn.Conv(features, (size, size), strides=(2, 2), padding="SAME")(h)
            h = _bn(train)(nn.relu(h))
        h = jnp.reshape(h, (h.shape[0], -1))
        h = _bn(train)(nn.relu(nn.Dense(1024)(h)))
        out = nn.Dense(2 * k * d)(h)
        return jnp.reshape(out[:, :k * d], (-1, k, d)), jnp.reshape(out[:, k * d:], (-1, k, d))


class RefConvDecoder(nn.Module):
    output_channels: int = 3

    @nn.compact
    def __call__(self, z, train: bool = False):
        h = _bn(train)(nn.relu(nn.Dense(1024)(z.astype(jnp.float32))))
        h = jnp.reshape(h, (-1, 2, 2, 256))
        for features, stride in ((256, 2), (256, 1), (128, 2), (64, 2), (32, 2)):
            h = nn.ConvTranspose(features, (5, 5), strides=(stride, stride), padding="SAME")(h)
            h = _bn(train)(nn.relu(h))
        h = nn.ConvTranspose(self.output_channels, (1, 1), padding="SAME")(h)
        return nn.sigmoid(h)


class RefClassifier(nn.Module):
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool = False):
        del train
        h = x.astype(jnp.float32)
        for features in (32, 64, 128):
            for _ in range(2):
                h = nn.relu(nn.Conv(features, (3, 3), padding="SAME")(h))
            h = nn.max_pool(h, (2, 2), strides=(2, 2))
        h = jnp.reshape(h, (h.shape[0], -1))
        h = nn.relu(nn.Dense(128)(h))
        return nn.Dense(self.num_classes)(h)


def reference_step_flops(exp, batch) -> float | None:
    """XLA's FLOPs (unoptimised HLO, lowered only) of the experiment's train step with the
    plain-flax reference networks in place of exon_jax's: the step's useful arithmetic."""
    from exon_jax import models, train
    K = exp.dataset.num_classes
    model = models.EXoNModel(encoder=RefConvEncoder(K, exp.config.model.latent_dim),
                             decoder=RefConvDecoder(exp.image_shape[-1]),
                             classifier=RefClassifier(K))
    hparams = train.unstack_tree(exp.hparams, 0)
    create = lambda key: train.create_train_state(key, model, exp.optimizer, hparams,
                                                  exp.settings, exp.image_shape)
    state = jax.eval_shape(create, jax.random.key(0))
    step = train.make_train_step(model, exp.optimizer, exp.settings)
    lowered = jax.jit(step).lower(state, hparams, batch)
    analysis = lowered.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else None
    return float(analysis["flops"]) if analysis and "flops" in analysis else None
