"""Settings, optimiser and training epoch of the authors' revised EXoN code.

Follows `train` in mnist/main.py (MNIST) and main.py (CIFAR-10) of
an-seunghwan/EXoN_official. One step, with B = Bu + Bl images on the [-1, 1] scale:

  ELBO on the un-augmented batch (labelled and unlabelled alike, w(y|x) from the classifier):
    recon = sum_b ||x_b - D(z~_b)||^2 / 2,   z~ = sum_k y_k (mu_k + sigma_k eps_k),
    y = straight-through Gumbel-max of w(y|x),
    kl1 = sum_b KL(w(.|x_b) || p(y)),  kl2 = sum_b sum_k w_k KL(q(z|x,k) || p(z|k));
  cce = cross-entropy of the augmented labelled images (summed);
  mix-up of the augmented labelled images with their labels (w ~ Beta(0.1, 0.1)) and of the
  augmented unlabelled images with soft pseudo-labels w(y|x_aug) of the current classifier
  (no gradient; w ~ Beta(2, 2));
  loss = recon + beta (kl1 + kl2 + cce) + lambda1 (cce + mixup_L) + lambda2(epoch) mixup_U,
  lambda2(epoch) = lambda1 exp(-5 (1 - min(1, epoch / R))^2).
Sums, not means, over the batch, as theirs. beta is fixed (`HParams.beta`), lambda1 is
`HParams.lambda1`, the prior is `HParams.prior`.

Optimisers (one optax transformation): Adam on the encoder and decoder; Adam with
decoupled weight decay on the classifier (their `weight_decay_decoupled`: after the Adam
update, theta -= wd * lr * theta_before, i.e. optax.adamw) with the classifier learning
rate schedule; Keras' epsilon 1e-7.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax

from exon_jax import sampling
from exon_jax import train as train_lib
from exon_jax.revision import augment, mixup, networks, schedules

NETWORKS = ("mnist", "cifar")
AUGMENTATIONS = ("mnist", "cifar", "none")
STRAIGHT_THROUGH = ("logits", "softmax")
CLASSIFIER_SCHEDULES = ("rampdown", "milestones")
PIPELINES = ("official", "exon")
ADAM_EPS = 1e-7  # Keras' default


@dataclasses.dataclass(frozen=True)
class RevisionSettings:
    """Static options of the revised method (from `config.revision`).

    Attributes:
      network: 'mnist' (mnist/model.py) | 'cifar' (model.py).
      latent_dim: d.
      dropout_rate: spatial dropout of the classifier (MNIST 0.5, CIFAR-10 `drop_rate` 0.1).
      augmentation: 'mnist' | 'cifar' | 'none'.
      mixup_alpha_labelled: Beta(a, a) of the labelled mix-up weight (their `epsilon`).
      mixup_alpha_unlabelled: Beta(a, a) of the unlabelled mix-up weight (2 in their code).
      rampup_epochs: R of the unlabelled mix-up weight ramp-up (`rampup_epoch`).
      pseudo_label_augment: pseudo-labels from the augmented images (`aug_pseudo`).
      pseudo_label_dropout: dropout on when computing pseudo-labels (MNIST: their buffer
        model has the classifier's dropout; CIFAR-10: `dropout_pseudo` False).
      straight_through: 'logits' (their `gumbel_max_sample`: gradient of log w + g) or
        'softmax' (`exon_jax.sampling.gumbel_softmax`, temperature 1).
      learning_rate: Adam learning rate of both optimisers.
      epochs: E of the classifier schedules.
      weight_decay: decoupled weight decay of the classifier.
      classifier_schedule: 'rampdown' (MNIST) | 'milestones' (CIFAR-10).
      rampdown_epoch: first epoch of the MNIST ramp-down.
      milestones, lr_gamma: CIFAR-10 step decay (`adjust_lr`, `lr_gamma`).
      warmup_autoencoder, warmup_classifier: learning-rate factors in epoch 0 (CIFAR-10 0.1,
        0.2; 1 = none).
      pipeline: 'official' (their epoch: (N // (Bu + Bl)) steps of Bu images drawn from all
        N training images, labelled batches one pass over the labelled set with a short last
        batch, restarted when exhausted) or 'exon' (one pass over the unlabelled split,
        labelled batches always full, as the EXoN runs).
    """

    network: str = "mnist"
    latent_dim: int = 2
    dropout_rate: float = 0.5
    augmentation: str = "mnist"
    mixup_alpha_labelled: float = 0.1
    mixup_alpha_unlabelled: float = 2.0
    rampup_epochs: int = 10
    pseudo_label_augment: bool = True
    pseudo_label_dropout: bool = True
    straight_through: str = "logits"
    learning_rate: float = 3e-3
    epochs: int = 100
    weight_decay: float = 5e-4
    classifier_schedule: str = "rampdown"
    rampdown_epoch: int = 10
    milestones: tuple = ()
    lr_gamma: float = 0.5
    warmup_autoencoder: float = 1.0
    warmup_classifier: float = 1.0
    pipeline: str = "exon"

    def __post_init__(self):
        for name, allowed in (
            ("network", NETWORKS),
            ("augmentation", AUGMENTATIONS),
            ("straight_through", STRAIGHT_THROUGH),
            ("classifier_schedule", CLASSIFIER_SCHEDULES),
            ("pipeline", PIPELINES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"config.revision.{name} must be one of {allowed}, got {getattr(self, name)!r}"
                )
        if self.rampup_epochs <= 0 or self.epochs <= 0:
            raise ValueError("config.revision.rampup_epochs and config.train.epochs must be > 0")
        if self.mixup_alpha_labelled <= 0 or self.mixup_alpha_unlabelled <= 0:
            raise ValueError("config.revision.mixup_alpha_* must be > 0")
        if not 0 <= self.dropout_rate < 1:
            raise ValueError("config.revision.dropout_rate must lie in [0, 1)")
        if list(self.milestones) != sorted(self.milestones) or (
            self.milestones and self.milestones[-1] >= self.epochs
        ):
            raise ValueError(
                "config.revision.milestones must increase and end before config.train.epochs"
            )


def revision_settings(config: ml_collections.ConfigDict) -> RevisionSettings:
    """`RevisionSettings` from `config.revision` plus config.model.latent_dim,
    config.optimizer.learning_rate and config.train.epochs."""
    r = config.revision
    return RevisionSettings(
        network=r.network,
        latent_dim=int(config.model.latent_dim),
        dropout_rate=float(r.dropout_rate),
        augmentation=r.augmentation,
        mixup_alpha_labelled=float(r.mixup_alpha_labelled),
        mixup_alpha_unlabelled=float(r.mixup_alpha_unlabelled),
        rampup_epochs=int(r.rampup_epochs),
        pseudo_label_augment=bool(r.pseudo_label_augment),
        pseudo_label_dropout=bool(r.pseudo_label_dropout),
        straight_through=r.straight_through,
        learning_rate=float(config.optimizer.learning_rate),
        epochs=int(config.train.epochs),
        weight_decay=float(r.weight_decay),
        classifier_schedule=r.classifier_schedule,
        rampdown_epoch=int(r.rampdown_epoch),
        milestones=tuple(int(m) for m in r.milestones),
        lr_gamma=float(r.lr_gamma),
        warmup_autoencoder=float(r.warmup_autoencoder),
        warmup_classifier=float(r.warmup_classifier),
        pipeline=r.get("pipeline", "exon"),
    )


def build_revision_model(
    rs: RevisionSettings,
    num_classes: int,
    image_shape: tuple[int, ...],
    conv_layout: str = "xla",
    transposed_conv: str = "xla",
) -> networks.RevisionModel:
    """The revised network for images [H, W, C] (MNIST: any H, W, C; CIFAR: 32 x 32);
    `conv_layout` is its classifier's convolution path (`models.conv`), `transposed_conv`
    the path of the CIFAR decoder's transposed convolutions (`models.conv_transpose`)."""
    if rs.network == "mnist":
        return networks.mnist_revision_model(
            num_classes, rs.latent_dim, image_shape, rs.dropout_rate, conv_layout
        )
    if tuple(image_shape[:2]) != (32, 32):
        raise ValueError(f"config.revision.network 'cifar' needs 32x32 images, got {image_shape}")
    return networks.cifar_revision_model(
        num_classes, rs.latent_dim, image_shape[2], rs.dropout_rate, conv_layout, transposed_conv
    )


def classifier_learning_rate(rs: RevisionSettings, epoch) -> jax.Array:
    """The classifier's learning rate in `epoch`; [] float32."""
    if rs.classifier_schedule == "rampdown":
        return schedules.rampdown_learning_rate(
            epoch, rs.learning_rate, rs.epochs, rs.rampdown_epoch
        )
    return schedules.milestone_learning_rate(
        epoch, rs.learning_rate, rs.epochs, rs.milestones, rs.lr_gamma, rs.warmup_classifier
    )


def autoencoder_learning_rate(rs: RevisionSettings, epoch) -> jax.Array:
    """The encoder/decoder learning rate in `epoch`; [] float32."""
    return schedules.warmup_learning_rate(epoch, rs.learning_rate, rs.warmup_autoencoder)


def _param_labels(params):
    """'classifier' for params['model']['classifier'], 'autoencoder' for everything else."""

    def label(path, _):
        keys = [getattr(p, "key", None) for p in path]
        return "classifier" if keys[:2] == ["model", "classifier"] else "autoencoder"

    return jax.tree_util.tree_map_with_path(label, params)


def build_revision_optimizer(
    rs: RevisionSettings, steps_per_epoch: int
) -> optax.GradientTransformation:
    """Adam (encoder, decoder) + AdamW (classifier) over params {'model': ...}, one opt_state.

    The schedules see optax's update count; epoch = count // steps_per_epoch (the count
    equals TrainState.step since every step updates).
    """
    epoch = lambda count: count // steps_per_epoch
    return optax.multi_transform(
        {
            "autoencoder": optax.adam(
                lambda c: autoencoder_learning_rate(rs, epoch(c)), eps=ADAM_EPS
            ),
            "classifier": optax.adamw(
                lambda c: classifier_learning_rate(rs, epoch(c)),
                eps=ADAM_EPS,
                weight_decay=rs.weight_decay,
            ),
        },
        _param_labels,
    )


def _kl_terms(log_probs, mean, logvar, prior):
    """Their closed-form KL terms summed over the batch (criterion.py `ELBO_criterion`).

    kl1 = sum_b sum_k w_bk (log w_bk - log p(k)), kl2 = sum_b sum_k w_bk KL(N(mu, s^2) || N(m0, v0)).
    """
    probs = jnp.exp(log_probs)
    kl1 = jnp.sum(probs * (log_probs - prior.log_weights))
    v0 = prior.variances
    per_component = 0.5 * jnp.sum(
        (mean - prior.means) ** 2 / v0 - 1.0 + jnp.log(v0) + jnp.exp(logvar) / v0 - logvar, axis=-1
    )
    return kl1, jnp.sum(probs * per_component)


def make_revision_train_step(
    model: networks.RevisionModel,
    optimizer: optax.GradientTransformation,
    settings: train_lib.TrainSettings,
    rs: RevisionSettings,
) -> Callable:
    """Builds `(state, hparams, batch) -> (state, metrics)`; batch = `train.gather_batch` output
    (x [Bu + Bl, H, W, C] in [0, 1], unlabelled first; labels [B]; labelled mask [B])."""
    bu = settings.batch_unlabelled

    def classify(params, batch_stats, x, train, dropout, key):
        logits, _ = model.apply(
            {"params": params, "batch_stats": batch_stats},
            x,
            train=train,
            dropout=dropout,
            method=model.classify_signed,
            mutable=["batch_stats"],
            rngs={"dropout": key},
        )
        return logits

    def forward(module, xs, x_aug_l, x_mix_l, x_mix_u, gumbel_key, noise_key):
        logits, mean, logvar = module.encode_signed(xs, train=True)
        if rs.straight_through == "logits":
            uniform = sampling.draw_flat(jax.random.uniform, gumbel_key, logits.shape)
            y = mixup.gumbel_max_hard(jax.nn.softmax(logits, -1), uniform)
        else:
            y = sampling.gumbel_softmax(gumbel_key, logits, 1.0, hard=True)
        eps = sampling.draw_flat(jax.random.normal, noise_key, mean.shape)
        z = jnp.einsum("bk,bkd->bd", y, mean + jnp.exp(0.5 * logvar) * eps)
        x_hat = module.decode_signed(z, train=True)
        # Same call order as theirs: each train-mode call moves the BatchNorm averages.
        logits_l = module.classify_signed(x_aug_l, train=True)
        logits_mix_l = module.classify_signed(x_mix_l, train=True)
        logits_mix_u = module.classify_signed(x_mix_u, train=True)
        return logits, mean, logvar, x_hat, logits_l, logits_mix_l, logits_mix_u

    def loss_fn(params, batch_stats, hparams, lambda2, inputs, keys):
        xs, y_l = inputs["xs"], inputs["y_l"]
        outputs, updates = model.apply(
            {"params": params["model"], "batch_stats": batch_stats},
            xs,
            inputs["x_aug_l"],
            inputs["x_mix_l"],
            inputs["x_mix_u"],
            keys["gumbel"],
            keys["noise"],
            method=forward,
            mutable=["batch_stats"],
            rngs={"dropout": keys["dropout"]},
        )
        logits, mean, logvar, x_hat, logits_l, logits_mix_l, logits_mix_u = outputs
        log_probs = mixup.clipped_log_prob(logits)
        recon = 0.5 * jnp.sum((xs - x_hat) ** 2)
        kl1, kl2 = _kl_terms(log_probs, mean, logvar, hparams.prior)
        cce = -jnp.sum(y_l * mixup.clipped_log_prob(logits_l))
        mixup_l = mixup.mixup_cross_entropy(
            mixup.clipped_log_prob(logits_mix_l), y_l, inputs["y_mix_l"], inputs["w_l"]
        )
        mixup_u = mixup.mixup_cross_entropy(
            mixup.clipped_log_prob(logits_mix_u), inputs["pseudo"], inputs["y_mix_u"], inputs["w_u"]
        )
        beta = hparams.beta
        loss = (
            recon + beta * (kl1 + kl2 + cce) + hparams.lambda1 * (cce + mixup_l) + lambda2 * mixup_u
        )
        n = xs.shape[0]
        correct = jnp.argmax(logits[bu:], -1) == jnp.argmax(y_l, -1)
        metrics = {
            "loss": loss,
            "recon": recon / n,
            "kl_label": kl1 / n,
            "kl_latent": kl2 / n,
            "kl": (kl1 + kl2) / n,
            "cross_entropy": cce / y_l.shape[0],
            "mixup_labelled": mixup_l / n,
            "mixup_unlabelled": mixup_u / n,
            "labelled_accuracy": jnp.mean(correct.astype(jnp.float32)),
        }
        return loss, (metrics, updates["batch_stats"])

    def train_step(state: train_lib.TrainState, hparams: train_lib.HParams, batch):
        x, labels, _ = batch
        xs = 2.0 * x - 1.0
        x_u, x_l = xs[:bu], xs[bu:]
        num_classes = hparams.prior.means.shape[-2]
        y_l = jax.nn.one_hot(labels[bu:], num_classes, dtype=xs.dtype)
        names = (
            "aug_l",
            "aug_u",
            "mix_w",
            "mix_l",
            "mix_u",
            "pseudo",
            "gumbel",
            "noise",
            "dropout",
        )
        keys = dict(
            zip(names, jax.random.split(jax.random.fold_in(state.key, state.step), len(names)))
        )
        x_aug_l = augment.augment_batch(keys["aug_l"], x_l, rs.augmentation)
        x_aug_u = augment.augment_batch(keys["aug_u"], x_u, rs.augmentation)
        # Pseudo-labels: the current classifier (their buffer model), train-mode BatchNorm,
        # its running-average updates discarded, no gradient.
        pseudo = jax.lax.stop_gradient(
            jax.nn.softmax(
                classify(
                    state.params["model"],
                    state.batch_stats,
                    x_aug_u if rs.pseudo_label_augment else x_u,
                    True,
                    rs.pseudo_label_dropout,
                    keys["pseudo"],
                ),
                -1,
            )
        )
        w_l, w_u = mixup.beta_pair(
            keys["mix_w"], rs.mixup_alpha_labelled, rs.mixup_alpha_unlabelled
        )
        x_mix_l, y_mix_l = mixup.draw_mixup(keys["mix_l"], x_aug_l, y_l, w_l)
        x_mix_u, y_mix_u = mixup.draw_mixup(keys["mix_u"], x_aug_u, pseudo, w_u)
        inputs = dict(
            xs=xs,
            x_aug_l=x_aug_l,
            y_l=y_l,
            x_mix_l=x_mix_l,
            y_mix_l=y_mix_l,
            w_l=w_l,
            x_mix_u=x_mix_u,
            y_mix_u=y_mix_u,
            w_u=w_u,
            pseudo=pseudo,
        )
        epoch = state.step // settings.steps_per_epoch
        lambda2 = schedules.rampup_weight(epoch, rs.rampup_epochs, hparams.lambda1)
        grads, (metrics, batch_stats) = jax.grad(loss_fn, has_aux=True)(
            state.params, state.batch_stats, hparams, lambda2, inputs, keys
        )
        beta = jnp.asarray(hparams.beta, jnp.float32)
        metrics.update(
            beta=beta,
            unlabelled_weight=lambda2,
            mixup_weight_labelled=w_l,
            mixup_weight_unlabelled=w_u,
            classifier_lr=classifier_learning_rate(rs, epoch),
            autoencoder_lr=autoencoder_learning_rate(rs, epoch),
        )
        return state.apply_gradients(optimizer, grads, batch_stats=batch_stats, beta=beta), metrics

    return train_step
