"""Flax linen networks of the authors' revised EXoN code (an-seunghwan/EXoN_official).

MNIST (mnist/model.py) and CIFAR-10 (model.py) encoders, classifiers and decoders, and
`RevisionModel`, an `exon_jax.models.EXoNModel`-compatible container (same `encode`,
`decode`, `__call__`, same 'encoder' / 'decoder' / 'classifier' parameter subtrees).

Pixel scales. Their data are scaled to [-1, 1] ((x - 127.5) / 127.5) and their decoders
end in tanh. The host passes images in [0, 1], so `RevisionModel.encode` / `classify`
map x -> 2x - 1 before the networks and `decode` maps tanh output t -> (t + 1) / 2; the
training step works on the [-1, 1] scale through the `*_signed` methods.

Shapes: B batch, K classes, d latent dimension, images [B, H, W, C] channels-last.
Initialisation: Keras defaults (Glorot-uniform kernels, zero biases, BatchNorm momentum
0.99 and epsilon 1e-3), as in `exon_jax.models`. Classifiers return logits; their
softmax is applied in the losses.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from exon_jax.models import batch_norm, conv, conv_transpose, dense, max_pool_2x2


def _head_init(key, shape, dtype=jnp.float32):
    """Glorot-uniform for each of K separate [n, d] kernels stacked as [K, n, d]."""
    limit = math.sqrt(6.0 / (shape[-2] + shape[-1]))
    return jax.random.uniform(key, shape, dtype, -limit, limit)


class ComponentHeads(nn.Module):
    """K separate linear heads (their lists of K Dense(d) layers), [B, n] -> [B, K, d]."""

    num_classes: int
    latent_dim: int

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        kernel = self.param("kernel", _head_init, (self.num_classes, h.shape[-1], self.latent_dim))
        bias = self.param("bias", nn.initializers.zeros, (self.num_classes, self.latent_dim))
        return jnp.einsum("bn,knd->bkd", h, kernel) + bias


def spatial_dropout(rate: float, deterministic: bool, name: Optional[str] = None) -> nn.Dropout:
    """Keras SpatialDropout2D: whole channels of [B, H, W, C] dropped, kept ones scaled 1/(1-rate)."""
    return nn.Dropout(rate, broadcast_dims=(1, 2), deterministic=deterministic, name=name)


class MNISTEncoder(nn.Module):
    """mnist/model.py `Encoder`: flatten -> Dense 256 relu -> Dense 128 relu -> K mean heads,
    K log-variance heads (Dense d each). Returns mean, logvar [B, K, d]."""

    num_classes: int = 10
    latent_dim: int = 2
    hidden: Sequence[int] = (256, 128)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False):
        del train
        h = jnp.reshape(x, (x.shape[0], -1)).astype(jnp.float32)
        for i, width in enumerate(self.hidden):
            h = nn.relu(dense(width, name=f"hidden_{i}")(h))
        mean = ComponentHeads(self.num_classes, self.latent_dim, name="mean")(h)
        logvar = ComponentHeads(self.num_classes, self.latent_dim, name="logvar")(h)
        return mean, logvar


class MNISTDecoder(nn.Module):
    """mnist/model.py `Decoder`: Dense 128 relu -> Dense 256 relu -> Dense 784 tanh -> [B,28,28,1]."""

    output_shape: Sequence[int] = (28, 28, 1)
    hidden: Sequence[int] = (128, 256)

    @nn.compact
    def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
        del train
        h = z.astype(jnp.float32)
        for i, width in enumerate(self.hidden):
            h = nn.relu(dense(width, name=f"hidden_{i}")(h))
        h = dense(math.prod(self.output_shape), name="output")(h)
        return jnp.reshape(jnp.tanh(h), (-1, *self.output_shape))


class MNISTClassifier(nn.Module):
    """mnist/model.py `Classifier`, w(y | x) logits [B, K].

    3 x [conv (32: 5x5, 64: 3x3, 128: 3x3; stride 1, SAME) -> BatchNorm -> leaky ReLU 0.1
    -> max-pool 2 (VALID: 28 -> 14 -> 7 -> 3) -> spatial dropout] -> global average pool
    -> Dense 64 -> BatchNorm -> ReLU -> Dense K.
    """

    num_classes: int = 10
    dropout_rate: float = 0.5
    conv_layout: str = "xla"  # weight-gradient path of its convolutions (`models.conv`)

    @nn.compact
    def __call__(
        self, x: jax.Array, train: bool = False, dropout: Optional[bool] = None
    ) -> jax.Array:
        """`dropout` defaults to `train`; with dropout on, apply needs rngs={'dropout': key}."""
        dropout = train if dropout is None else dropout
        h = x.astype(jnp.float32)
        for i, (features, size) in enumerate(((32, 5), (64, 3), (128, 3))):
            h = conv(features, size, 1, name=f"conv_{i}", layout=self.conv_layout)(h)
            h = nn.leaky_relu(batch_norm(train, name=f"norm_{i}")(h), 0.1)
            h = max_pool_2x2(h)
            h = spatial_dropout(self.dropout_rate, not dropout, name=f"dropout_{i}")(h)
        h = jnp.mean(h, axis=(1, 2))
        h = dense(64, name="hidden")(h)
        h = nn.relu(batch_norm(train, name="norm_hidden")(h))
        return dense(self.num_classes, name="logits")(h)


class CIFAREncoder(nn.Module):
    """model.py `Encoder`: conv 32 5x5 s2, 64 4x4 s2, 128 4x4 s2, 256 4x4 s1 (each BatchNorm,
    ReLU; SAME: 16, 8, 4, 4 pixels) -> flatten [B, 4096] -> Dense 1024 -> BatchNorm (no
    activation) -> K mean heads, K log-variance heads (Dense d each)."""

    num_classes: int = 10
    latent_dim: int = 256

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False):
        h = x.astype(jnp.float32)
        for i, (features, size, stride) in enumerate(
            ((32, 5, 2), (64, 4, 2), (128, 4, 2), (256, 4, 1))
        ):
            h = conv(features, size, stride, name=f"conv_{i}")(h)
            h = nn.relu(batch_norm(train, name=f"norm_{i}")(h))
        h = jnp.reshape(h, (h.shape[0], -1))
        h = batch_norm(train, name="norm_hidden")(dense(1024, name="hidden")(h))
        mean = ComponentHeads(self.num_classes, self.latent_dim, name="mean")(h)
        logvar = ComponentHeads(self.num_classes, self.latent_dim, name="logvar")(h)
        return mean, logvar


class CIFARDecoder(nn.Module):
    """model.py `Decoder`: Dense 4*4*512 -> BatchNorm -> ReLU -> [B,4,4,512] -> conv-transpose
    5x5 256 s2, 128 s2, 64 s2, 32 s1 (each BatchNorm, ReLU; 8, 16, 32, 32 pixels) -> conv 4x4
    `output_channels` SAME -> tanh."""

    output_channels: int = 3
    transposed_conv: str = "xla"  # path of the transposed convolutions (`models.conv_transpose`)

    @nn.compact
    def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
        h = dense(4 * 4 * 512, name="hidden")(z.astype(jnp.float32))
        h = jnp.reshape(nn.relu(batch_norm(train, name="norm_hidden")(h)), (-1, 4, 4, 512))
        for i, (features, stride) in enumerate(((256, 2), (128, 2), (64, 2), (32, 1))):
            deconv = conv_transpose(
                features, 5, stride, path=self.transposed_conv, name=f"deconv_{i}"
            )
            h = nn.relu(batch_norm(train, name=f"norm_{i}")(deconv(h)))
        return jnp.tanh(conv(self.output_channels, 4, 1, name="output")(h))


class CIFARClassifier(nn.Module):
    """model.py `Classifier`, logits [B, K]: 3 x conv 128, max-pool 2, spatial dropout,
    3 x conv 256, max-pool 2, spatial dropout, conv 512, conv 256, conv 128 (every conv 3x3
    stride 1 SAME -> BatchNorm -> leaky ReLU 0.1) -> global average pool -> Dense K."""

    num_classes: int = 10
    dropout_rate: float = 0.1
    conv_layout: str = "xla"  # weight-gradient path of its convolutions (`models.conv`)

    @nn.compact
    def __call__(
        self, x: jax.Array, train: bool = False, dropout: Optional[bool] = None
    ) -> jax.Array:
        """`dropout` defaults to `train`; with dropout on, apply needs rngs={'dropout': key}."""
        dropout = train if dropout is None else dropout
        h = x.astype(jnp.float32)
        stages = ((128, 128, 128), (256, 256, 256), (512, 256, 128))
        for s, widths in enumerate(stages):
            for i, features in enumerate(widths):
                h = conv(features, 3, 1, name=f"conv_{s}_{i}", layout=self.conv_layout)(h)
                h = nn.leaky_relu(batch_norm(train, name=f"norm_{s}_{i}")(h), 0.1)
            if s < 2:
                h = max_pool_2x2(h)
                h = spatial_dropout(self.dropout_rate, not dropout, name=f"dropout_{s}")(h)
        h = jnp.mean(h, axis=(1, 2))
        return dense(self.num_classes, name="logits")(h)


class RevisionModel(nn.Module):
    """Encoder, decoder and classifier of the revised code; `EXoNModel`-compatible.

    Public methods take / return pixels in [0, 1]; the `*_signed` ones work on [-1, 1]
    (their scale). The encoder returns (mean, logvar) and the classifier gives the mixture
    logits, as `EXoNModel` with a classifier.

    Attributes:
      encoder: encoder(x, train) -> mean, logvar [B, K, d].
      decoder: decoder(z, train) -> [B, H, W, C] in [-1, 1] (tanh).
      classifier: classifier(x, train, dropout) -> logits [B, K].
    """

    encoder: nn.Module
    decoder: nn.Module
    classifier: nn.Module

    def classify_signed(
        self, x: jax.Array, train: bool = False, dropout: Optional[bool] = None
    ) -> jax.Array:
        """Logits [B, K] of images [B, H, W, C] in [-1, 1]; `dropout` defaults to `train`."""
        return self.classifier(x, train=train, dropout=dropout)

    def encode_signed(self, x: jax.Array, train: bool = False):
        """(logits [B, K], mean, logvar [B, K, d]) of images in [-1, 1]; encoder first, as theirs."""
        mean, logvar = self.encoder(x, train=train)
        return self.classifier(x, train=train), mean, logvar

    def decode_signed(self, z: jax.Array, train: bool = False) -> jax.Array:
        """Decoder output in [-1, 1], [B, H, W, C]."""
        return self.decoder(z, train=train)

    def encode(self, x: jax.Array, train: bool = False):
        """q(y, z | x): logits [B, K], mean [B, K, d], logvar [B, K, d]; x in [0, 1]."""
        return self.encode_signed(2.0 * x - 1.0, train)

    def classify(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Logits [B, K] of images in [0, 1]."""
        return self.classify_signed(2.0 * x - 1.0, train)

    def decode(self, z: jax.Array, train: bool = False) -> jax.Array:
        """Decoder mean in [0, 1], [B, H, W, C]."""
        return (self.decode_signed(z, train) + 1.0) / 2.0

    def __call__(self, x: jax.Array, train: bool = False):
        """Encode x in [0, 1] and decode component 0's mean (creates every variable in `init`).

        Returns:
          logits [B, K], mean [B, K, d], logvar [B, K, d], x_hat [B, H, W, C] in [0, 1].
        """
        logits, mean, logvar = self.encode(x, train)
        return logits, mean, logvar, self.decode(mean[:, 0, :], train)


def mnist_revision_model(
    num_classes: int = 10,
    latent_dim: int = 2,
    image_shape: Sequence[int] = (28, 28, 1),
    dropout_rate: float = 0.5,
    conv_layout: str = "xla",
) -> RevisionModel:
    """The MNIST network of mnist/model.py (`conv_layout`: see `models.conv`)."""
    return RevisionModel(
        encoder=MNISTEncoder(num_classes, latent_dim),
        decoder=MNISTDecoder(tuple(image_shape)),
        classifier=MNISTClassifier(num_classes, dropout_rate, conv_layout),
    )


def cifar_revision_model(
    num_classes: int = 10,
    latent_dim: int = 256,
    output_channels: int = 3,
    dropout_rate: float = 0.1,
    conv_layout: str = "xla",
    transposed_conv: str = "xla",
) -> RevisionModel:
    """The CIFAR-10 network of model.py (`conv_layout` of the classifier: `models.conv`;
    `transposed_conv` the decoder's transposed-convolution path: `models.conv_transpose`)."""
    return RevisionModel(
        encoder=CIFAREncoder(num_classes, latent_dim),
        decoder=CIFARDecoder(output_channels, transposed_conv),
        classifier=CIFARClassifier(num_classes, dropout_rate, conv_layout),
    )
