"""Epoch-wise schedules of the authors' revised EXoN code (an-seunghwan/EXoN_official).

All functions are pure jnp maps of the epoch number (an int or an int array, starting
at 0), so they run inside jit / vmap / scan and inside optax schedules.

- `rampup_weight`: the weight of the unlabelled mix-up loss, `weight_schedule` in
  mnist/main.py and main.py: w * exp(-5 (1 - min(1, e / R))^2).
- `rampdown_learning_rate`: the MNIST classifier learning rate (mnist/main.py, `main`):
  lr before `rampdown_epoch`, afterwards lr * exp(-5 (1 - (E - e) / E)^2) = lr exp(-5 (e/E)^2).
- `milestone_learning_rate`: the CIFAR-10 classifier learning rate (main.py, `main`):
  a warm-up factor at epoch 0, lr * gamma^i between milestones, and after the last
  milestone m: lr gamma^n * exp(-5 (1 - (E - e) / (E - m))^2).
- `warmup_learning_rate`: the CIFAR-10 encoder/decoder learning rate (a factor at epoch 0).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp


def rampup_weight(epoch, rampup_epochs: float, weight_max) -> jax.Array:
    """w_max * exp(-5 (1 - min(1, epoch / rampup_epochs))^2); [] float32."""
    t = jnp.minimum(1.0, jnp.asarray(epoch, jnp.float32) / rampup_epochs)
    return weight_max * jnp.exp(-5.0 * (1.0 - t) ** 2)


def rampdown_learning_rate(
    epoch, learning_rate: float, epochs: int, rampdown_epoch: int
) -> jax.Array:
    """lr for epoch < rampdown_epoch, else lr * exp(-5 (1 - (E - epoch) / E)^2); [] float32."""
    e = jnp.asarray(epoch, jnp.float32)
    decayed = learning_rate * jnp.exp(-5.0 * (1.0 - (epochs - e) / epochs) ** 2)
    return jnp.where(e >= rampdown_epoch, decayed, jnp.float32(learning_rate))


def milestone_learning_rate(
    epoch,
    learning_rate: float,
    epochs: int,
    milestones: Sequence[int],
    gamma: float,
    warmup_factor: float = 1.0,
) -> jax.Array:
    """The CIFAR-10 classifier schedule of main.py; [] float32.

    Epoch 0: lr * warmup_factor. Epoch e >= 1 before the last milestone: lr * gamma^i,
    i = number of milestones <= e. From the last milestone m on:
    lr * gamma^n * exp(-5 (1 - (E - e) / (E - m))^2), n = len(milestones).
    """
    e = jnp.asarray(epoch, jnp.float32)
    milestones = tuple(milestones)
    if not milestones:
        return jnp.where(e < 1, learning_rate * warmup_factor, jnp.float32(learning_rate))
    passed = jnp.sum(e >= jnp.asarray(milestones, jnp.float32))
    stepped = learning_rate * jnp.asarray(gamma, jnp.float32) ** passed
    last = milestones[-1]
    tail = (
        learning_rate
        * gamma ** len(milestones)
        * jnp.exp(-5.0 * (1.0 - (epochs - e) / (epochs - last)) ** 2)
    )
    lr = jnp.where(e >= last, tail, stepped)
    return jnp.where(e < 1, jnp.float32(learning_rate * warmup_factor), lr)


def warmup_learning_rate(epoch, learning_rate: float, warmup_factor: float = 1.0) -> jax.Array:
    """lr * warmup_factor at epoch 0, lr afterwards; [] float32."""
    e = jnp.asarray(epoch, jnp.float32)
    return jnp.where(e < 1, jnp.float32(learning_rate * warmup_factor), jnp.float32(learning_rate))
