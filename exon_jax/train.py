"""Compiled training: the train state, a pure train step, a scanned epoch, sweeps.

The step is a pure function of (state, hparams, batch). Numeric
hyper-parameters (lambda1, lambda2, epsilon, beta, the prior itself) live in a
traced `HParams` pytree, so `jax.vmap` over a leading model axis of both the
state and the hparams turns one model's epoch into a whole grid's epoch,
compiled once. Choices that change shapes or control flow (likelihood, beta
mode, network) are fixed in `TrainSettings` when the step is built.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from exon_jax import batching
from exon_jax import losses
from exon_jax.priors import MixturePrior
from exon_jax.sampling import sample_latent

BETA_MODES = ("closed_form", "learned", "fixed")
OBJECTIVES = ("exon", "supervised")


class HParams(flax.struct.PyTreeNode):
    """Traced per-model hyper-parameters (a leading model axis in a sweep).

    Attributes:
      lambda1: [] weight of the labelled cross-entropy (eq. 12 uses lambda1 + 1).
      lambda2: [] beta penalty weight (Gaussian likelihood only).
      epsilon: [] pixel-variance floor of the weighted Gaussian likelihood (eq. 13).
      beta: [] the fixed beta (`fixed` mode) or the initial beta (`learned`).
      prior: the designed mixture prior, means/variances [K, d].
    """

    lambda1: jax.Array
    lambda2: jax.Array
    epsilon: jax.Array
    beta: jax.Array
    prior: MixturePrior


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainSettings:
    """Static choices fixed when the step is compiled (built by `configuration.build_settings`).

    The batch sizes and data counts have no defaults: they come from the config and the data.
    """

    batch_unlabelled: int
    batch_labelled: int
    num_unlabelled: int
    num_labelled: int
    likelihood: str = "gaussian"
    beta_mode: str = "closed_form"
    objective: str = "exon"
    temperature: float = 1.0
    hard: bool = False
    epoch_steps: int = 0  # 0: one pass over the unlabelled set
    labelled_restart: bool = False  # labelled batches as `batching.labelled_batch_sizes`

    @property
    def steps_per_epoch(self) -> int:
        if self.epoch_steps:
            return self.epoch_steps
        return batching.num_steps_per_epoch(self.num_unlabelled, self.batch_unlabelled)

    @property
    def labelled_sizes(self) -> tuple[int, ...]:
        """Labelled batch sizes of one cycle of steps (one size unless labelled_restart)."""
        return batching.labelled_batch_sizes(
            self.num_labelled, self.batch_labelled, self.labelled_restart
        )

    def batch_indices(self, epoch_key: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The epoch's batch indices (unlabelled [S, Bu], labelled [S, Bl]); jit-able."""
        return batching.epoch_batch_indices(
            epoch_key,
            self.num_unlabelled,
            self.num_labelled,
            self.batch_unlabelled,
            self.batch_labelled,
            self.steps_per_epoch,
            self.labelled_restart,
        )


class TrainState(flax.struct.PyTreeNode):
    """Everything that changes during training; arrays only.

    Attributes:
      step: [] int32 optimiser steps taken.
      params: {"model": network params, "log_beta": [] (learned mode only)}.
      batch_stats: BatchNorm running statistics ({} for the MLP networks).
      opt_state: optimiser state.
      key: this model's PRNG key; step t uses fold_in(key, t).
      beta: [] the beta used by the last step (closed-form, learned or fixed).
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    key: jax.Array
    beta: jax.Array

    def apply_gradients(
        self, optimizer: optax.GradientTransformation, grads, **changes
    ) -> "TrainState":
        """One optimiser step: params moved by `grads`, step + 1, and the other fields
        given in `changes` (e.g. the step's new batch_stats and beta)."""
        updates, opt_state = optimizer.update(grads, self.opt_state, self.params)
        return self.replace(
            step=self.step + 1,
            params=optax.apply_updates(self.params, updates),
            opt_state=opt_state,
            **changes,
        )


class DeviceData(flax.struct.PyTreeNode):
    """Training arrays resident on the device; batches are gathered by index.

    Attributes:
      images: uint8 or float32 in [0, 1], [N, H, W, C]: all training images.
      labels: int32 [N].
      labelled_idx: int32 [L] indices of the labelled examples.
      unlabelled_idx: int32 [U] indices of the unlabelled examples.
    """

    images: jax.Array
    labels: jax.Array
    labelled_idx: jax.Array
    unlabelled_idx: jax.Array


def _encode_sample_decode(module, x, key, temperature, hard, train):
    logits, mean, logvar = module.encode(x, train=train)
    z = sample_latent(key, logits, mean, logvar, temperature, hard)
    x_hat = module.decode(z, train=train)
    return logits, mean, logvar, x_hat


def create_train_state(
    key: jax.Array,
    model: nn.Module,
    optimizer: optax.GradientTransformation,
    hparams: HParams,
    settings: TrainSettings,
    image_shape: tuple[int, ...],
) -> TrainState:
    """Initialises one model's state (vmap this over keys/hparams for a sweep).

    Args:
      key: PRNG key; split into the init key and the model's training key.
      model: an `EXoNModel`.
      optimizer: optax transformation.
      hparams: this model's hyper-parameters.
      settings: static training settings.
      image_shape: [H, W, C] of one image.

    Returns:
      A fresh TrainState.
    """
    init_key, train_key = jax.random.split(key)
    variables = model.init(init_key, jnp.zeros((1, *image_shape), jnp.float32), train=False)
    params = {"model": variables["params"]}
    if settings.beta_mode == "learned":
        params["log_beta"] = jnp.log(jnp.asarray(hparams.beta, jnp.float32))
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=optimizer.init(params),
        key=train_key,
        beta=jnp.asarray(hparams.beta, jnp.float32),
    )


def gather_batch(data: DeviceData, unlabelled_batch: jax.Array, labelled_batch: jax.Array):
    """Gathers one mixed batch: unlabelled examples first, then labelled ones.

    Args:
      data: device-resident training arrays.
      unlabelled_batch: int32 [Bu] positions into `data.unlabelled_idx`.
      labelled_batch: int32 [Bl] positions into `data.labelled_idx`.

    Returns:
      (x float32 [Bu + Bl, H, W, C] in [0, 1], labels int32 [Bu + Bl], labelled bool [Bu + Bl]).
    """
    idx = jnp.concatenate(
        [data.unlabelled_idx[unlabelled_batch], data.labelled_idx[labelled_batch]]
    )
    x = batching.scale_images(data.images[idx])
    labelled = jnp.arange(idx.shape[0]) >= unlabelled_batch.shape[0]
    return x, data.labels[idx], labelled


def make_train_step(
    model: nn.Module, optimizer: optax.GradientTransformation, settings: TrainSettings
) -> Callable:
    """Builds the pure step `(state, hparams, batch) -> (state, metrics)`.

    `batch` is (x [B, H, W, C], labels [B], labelled [B]); metrics is a dict of
    scalars (the objective's terms).
    """
    if settings.beta_mode not in BETA_MODES:
        raise ValueError(f"beta_mode must be one of {BETA_MODES}, got {settings.beta_mode!r}")
    if settings.objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {settings.objective!r}")
    forward = functools.partial(
        _encode_sample_decode, temperature=settings.temperature, hard=settings.hard, train=True
    )

    def loss_fn(params, state, hparams, x, labels, labelled, key):
        (logits, mean, logvar, x_hat), updates = model.apply(
            {"params": params["model"], "batch_stats": state.batch_stats},
            x,
            key,
            method=forward,
            mutable=["batch_stats"],
        )
        if settings.beta_mode == "closed_form":
            beta = jax.lax.stop_gradient(losses.optimal_beta(x, x_hat, hparams.lambda2))
        elif settings.beta_mode == "learned":
            beta = jnp.exp(params["log_beta"])
        else:
            beta = hparams.beta
        loss, terms = losses.exon_objective(
            x,
            x_hat,
            logits,
            mean,
            logvar,
            labels,
            labelled,
            hparams.prior,
            lambda1=hparams.lambda1,
            lambda2=hparams.lambda2,
            beta=beta,
            epsilon=hparams.epsilon,
            likelihood=settings.likelihood,
        )
        if settings.objective == "supervised":
            loss = (hparams.lambda1 + 1.0) * terms["cross_entropy"]
        return loss, (terms, updates.get("batch_stats", {}), beta)

    def train_step(state: TrainState, hparams: HParams, batch) -> tuple[TrainState, Mapping]:
        x, labels, labelled = batch
        key = jax.random.fold_in(state.key, state.step)
        grads, (terms, batch_stats, beta) = jax.grad(loss_fn, has_aux=True)(
            state.params, state, hparams, x, labels, labelled, key
        )
        new_state = state.apply_gradients(optimizer, grads, batch_stats=batch_stats, beta=beta)
        return new_state, dict(terms)

    return train_step


def make_indexed_step(train_step: Callable, batch_sharding=None) -> Callable:
    """`(state, hparams, data, unlabelled_batch, labelled_batch) -> (state, metrics)` from a
    method's `train_step(state, hparams, batch)`.

    The step gathers its own batch from the device-resident data by index. With
    `batch_sharding` (a NamedSharding over the batch axis) each batch is split
    across devices: data parallelism, XLA inserting the gradient reduction.
    """

    def indexed_step(state, hparams, data: DeviceData, unlabelled_batch, labelled_batch):
        batch = gather_batch(data, unlabelled_batch, labelled_batch)
        if batch_sharding is not None:
            batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
        return train_step(state, hparams, batch)

    return indexed_step


def summarise_steps(per_step: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """Per-step metrics [S, ...] -> epoch means [...] plus `max_loss` (non-finite if any step was)."""
    metrics = {name: jnp.mean(value, axis=0) for name, value in per_step.items()}
    metrics["max_loss"] = jnp.max(per_step["loss"], axis=0)
    return metrics


def make_train_epoch(indexed_step: Callable, settings: TrainSettings) -> Callable:
    """Builds `(state, hparams, data, epoch_key) -> (state, metrics)`: one epoch as a scan.

    `indexed_step` is `make_indexed_step`'s output. The batch order comes from
    `epoch_key` alone (shared by every model of a sweep); metrics are `summarise_steps`
    of the per-step terms. With restarting labelled batches of k sizes the scan runs
    over cycles of k steps (each size its own static shape), the rest unrolled after it.
    """
    sizes = settings.labelled_sizes

    def train_epoch(state: TrainState, hparams: HParams, data: DeviceData, epoch_key: jax.Array):
        unlabelled, labelled = settings.batch_indices(epoch_key)
        if len(sizes) == 1:
            state, per_step = jax.lax.scan(
                lambda state, order: indexed_step(state, hparams, data, *order),
                state,
                (unlabelled, labelled),
            )
            return state, summarise_steps(per_step)
        k = len(sizes)
        cycles = unlabelled.shape[0] // k

        def run_steps(state, u, lab):
            out = []
            for j in range(u.shape[0]):
                state, metrics = indexed_step(state, hparams, data, u[j], lab[j, : sizes[j % k]])
                out.append(metrics)
            return state, jax.tree.map(lambda *m: jnp.stack(m), *out)

        state, per_cycle = jax.lax.scan(
            lambda state, order: run_steps(state, *order),
            state,
            (
                unlabelled[: cycles * k].reshape(cycles, k, -1),
                labelled[: cycles * k].reshape(cycles, k, -1),
            ),
        )
        per_step = jax.tree.map(lambda m: m.reshape(-1, *m.shape[2:]), per_cycle)
        if unlabelled.shape[0] > cycles * k:
            state, rest = run_steps(state, unlabelled[cycles * k :], labelled[cycles * k :])
            per_step = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), per_step, rest)
        return state, summarise_steps(per_step)

    return train_epoch


@dataclasses.dataclass(frozen=True)
class StoppedEpoch:
    """What a stepwise epoch ended early by its `stop` callback returns instead of metrics.

    Attributes:
      steps: the epoch's steps done, 1 <= steps < steps_per_epoch (resumed ones included).
      per_step: their metrics, one dict of [G] device arrays per step, in order.
    """

    steps: int
    per_step: list[dict[str, jax.Array]]


STOP_RUN_AHEAD = 2  # steps a stoppable stepwise epoch may queue beyond the finished ones


def make_stepwise_epoch(
    jitted_step: Callable, settings: TrainSettings, progress: Callable | None = None
) -> Callable:
    """The same epoch as `make_train_epoch`, driven one compiled step per call from Python.

    `jitted_step` is a jitted (possibly model-lifted) `make_indexed_step`. Used where a
    scanned loop is slow (convolutions on XLA:CPU run ~10x slower inside a while loop)
    and by the benchmarks as the baseline of the scanned epoch. Restarting labelled
    batches of k sizes compile k programs (one per size). `progress(i, metrics)`, when
    given, is called after step i (1-based) is dispatched, with its metrics still on
    device (nothing waits for them).

    The epoch `(state, hparams, data, epoch_key, start=0, earlier=(), stop=None)` can
    resume and stop between steps: the batch order comes from `epoch_key` alone and each
    step's random key from `state.step`, so an epoch resumed at step `start` from the
    state after that step, given the per-step metrics of the steps before it
    (`earlier`, `start` dicts), ends exactly as the uninterrupted epoch. `stop()`, when
    given, is called after every step but the last; when it returns True the epoch ends
    there, returning `(state, StoppedEpoch)` instead of `(state, metrics)`. With `stop` the
    host dispatches at most `STOP_RUN_AHEAD` steps ahead of the device (else it queues a
    whole epoch at once, and the stop would come only at its end).
    """
    orders_fn = jax.jit(settings.batch_indices)
    summarise = jax.jit(summarise_steps)
    sizes = settings.labelled_sizes
    total = settings.steps_per_epoch

    def stepwise_epoch(state, hparams, data, epoch_key, start=0, earlier=(), stop=None):
        if len(earlier) != start or not 0 <= start < total:
            raise ValueError(f"resuming at step {start} of {total} with {len(earlier)} earlier")
        unlabelled, labelled = orders_fn(epoch_key)
        per_step = list(earlier)
        for i in range(start, total):
            size = sizes[i % len(sizes)]
            labelled_batch = labelled[i] if size == labelled.shape[1] else labelled[i, :size]
            state, metrics = jitted_step(state, hparams, data, unlabelled[i], labelled_batch)
            per_step.append(metrics)
            if progress is not None:
                progress(i + 1, metrics)
            if stop is not None and i + 1 < total:
                if i - STOP_RUN_AHEAD >= start:
                    jax.block_until_ready(per_step[i - STOP_RUN_AHEAD])
                if stop():
                    return state, StoppedEpoch(i + 1, per_step)
        return state, summarise(jax.tree.map(lambda *m: jnp.stack(m), *per_step))

    return stepwise_epoch


def make_eval_forward(model: nn.Module, chunk_size: int = 1000) -> Callable:
    """Builds `(state, images uint8 [N, H, W, C]) -> (logits [N, K], mean, logvar [N, K, d])`.

    Eval mode (BatchNorm running averages), no sampling; evaluated in chunks of
    `chunk_size` with `lax.map` so memory stays bounded (the last chunk is padded
    and the padding dropped from the outputs).
    """

    def encode(state: TrainState, images: jax.Array):
        variables = {"params": state.params["model"], "batch_stats": state.batch_stats}
        n = images.shape[0]
        size = min(chunk_size, n)
        padded = jnp.pad(images, [(0, -n % size)] + [(0, 0)] * (images.ndim - 1))
        chunks = padded.reshape(-1, size, *images.shape[1:])
        out = jax.lax.map(
            lambda c: model.apply(
                variables, batching.scale_images(c), train=False, method=model.encode
            ),
            chunks,
        )
        return jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:])[:n], out)

    return encode


def stack_trees(trees):
    """Stacks a list of identical pytrees along a new leading (model) axis."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def unstack_tree(tree, index: int):
    """Takes model `index` out of a pytree with a leading model axis."""
    return jax.tree.map(lambda leaf: leaf[index], tree)


def make_classifier_pretrain_epoch(
    model: nn.Module, optimizer: optax.GradientTransformation, batch_size: int, num_labelled: int
) -> Callable:
    """Builds `(state, opt_state, data, epoch_key) -> (state, opt_state, metrics)`.

    One epoch of supervised pre-training of the model's separate classifier (the
    CIFAR-10 setting: paper Table 2, 15 epochs of Adam 2e-3, batch 128) on the
    labelled set, as a scan; only `state.params["model"]["classifier"]` changes.
    `opt_state` is the pre-training optimiser's state over those parameters.
    """

    def loss_fn(classifier_params, state, x, labels):
        params = dict(state.params["model"], classifier=classifier_params)
        logits = model.apply(
            {"params": params, "batch_stats": state.batch_stats},
            x,
            method=lambda module, x: module.classifier(x, train=True),
        )
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return loss, jnp.mean(jnp.argmax(logits, -1) == labels)

    def pretrain_epoch(state: TrainState, opt_state, data: DeviceData, epoch_key: jax.Array):
        order, _ = batching.epoch_batch_indices(
            epoch_key, num_labelled, num_labelled, batch_size, 1
        )

        def body(carry, positions):
            classifier_params, opt_state = carry
            idx = data.labelled_idx[positions]
            x, labels = batching.scale_images(data.images[idx]), data.labels[idx]
            (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                classifier_params, state, x, labels
            )
            updates, opt_state = optimizer.update(grads, opt_state, classifier_params)
            return (optax.apply_updates(classifier_params, updates), opt_state), (loss, accuracy)

        (classifier_params, opt_state), (loss, accuracy) = jax.lax.scan(
            body, (state.params["model"]["classifier"], opt_state), order
        )
        params = dict(state.params, model=dict(state.params["model"], classifier=classifier_params))
        return (
            state.replace(params=params),
            opt_state,
            {"loss": jnp.mean(loss), "accuracy": jnp.mean(accuracy)},
        )

    return pretrain_epoch


def over_models(fn: Callable, num_models: int, mode: str = "vmap") -> Callable:
    """Lifts a one-model `fn(per_model_a, per_model_b, *shared)` to a leading model axis.

    The first two arguments (e.g. state and hparams) carry the model axis [G];
    the rest are shared by every model. `mode` picks how the G copies run:
    "vmap" (one batched program, the default) or "map" (`lax.map`, one model after
    another inside the same compiled program; for convolutions on CPU, where
    vmapped per-model kernels become grouped convolutions that XLA:CPU runs
    slowly). With G = 1 the model axis is squeezed away, so a single model runs
    exactly the unbatched program.
    """
    if num_models == 1:

        def single(a, b, *shared):
            out = fn(unstack_tree(a, 0), unstack_tree(b, 0), *shared)
            return jax.tree.map(lambda leaf: leaf[None], out)

        return single
    if mode == "map":

        def sequential(a, b, *shared):
            return jax.lax.map(lambda ab: fn(ab[0], ab[1], *shared), (a, b))

        return sequential
    if mode != "vmap":
        raise ValueError(f"mode must be 'vmap' or 'map', got {mode!r}")

    def batched(a, b, *shared):
        return jax.vmap(lambda x, y: fn(x, y, *shared))(a, b)

    return batched
