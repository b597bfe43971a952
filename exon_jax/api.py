"""A trained run from Python: `load_run(workdir)` needs only the workdir, no training data.

  import exon_jax
  run = exon_jax.load_run("workdirs/mnist")
  probs, means, logvars = run.encode(images)   # [N, K], [N, K, d], [N, K, d]
  codes = run.embed(images)                    # [N, d]
  labels = run.classify(images)                # int [N]
  pictures = run.decode(codes)                 # [N, H, W, C] in [0, 1]
  drawn = run.sample(jax.random.key(0), [4, 4, 9])

Images may be uint8 in [0, 255] or float in [0, 1], [N, H, W, C] (or [N, H, W] for one
channel). The run's prior is the exact one it was trained with (from its checkpoint).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from exon_jax import checkpoints, configuration, metrics, priors, train
from exon_jax.run_record import read_record, stored_config


class Run:
    """One trained model of a workdir (one point of a grid), in eval mode.

    Attributes:
      config: the config it was trained with.
      point: its grid point ({} for a single run); name: its point name.
      prior: the MixturePrior it was trained with, means/variances [K, d].
      class_names: K names; image_shape: (H, W, C); epoch: the restored checkpoint's epoch.
    """

    def __init__(self, config, point, prior, class_names, image_shape, model, state, epoch):
        from exon_jax.figures import ModelFunctions  # the one eval-mode encode / decode

        self.config: ml_collections.ConfigDict = config
        self.point: dict[str, Any] = point
        self.name = configuration.point_name(point)
        self.prior: priors.MixturePrior = prior
        self.class_names: tuple[str, ...] = tuple(class_names)
        self.image_shape: tuple[int, ...] = tuple(image_shape)
        self.epoch = epoch
        self._state = state.replace(opt_state=())
        self._functions = ModelFunctions(model)

    def _images(self, images) -> np.ndarray:
        """uint8 as given, anything else float32 checked to lie in [0, 1]; [N, H, W] -> C = 1."""
        x = np.asarray(images)
        if x.ndim == len(self.image_shape) and self.image_shape[-1] == 1:
            x = x[..., None]
        if x.shape[1:] != self.image_shape:
            raise ValueError(
                f"images must be [N, {', '.join(map(str, self.image_shape))}], got shape {x.shape}"
            )
        if x.dtype == np.uint8:
            return x
        x = x.astype(np.float32)
        if x.size and (x.min() < 0.0 or x.max() > 1.0):
            raise ValueError("float images must lie in [0, 1] (uint8 images may be in [0, 255])")
        return x

    def encode(self, images) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """q(y, z | x): probs [N, K] = w(y|x), means [N, K, d], logvars [N, K, d]."""
        logits, mean, logvar = self._functions.encode(self._state, self._images(images))
        return np.asarray(jax.nn.softmax(logits, axis=-1)), np.asarray(mean), np.asarray(logvar)

    def embed(self, images) -> np.ndarray:
        """[N, d]: the posterior mean of each image's most probable component."""
        probs, mean, _ = self.encode(images)
        return np.asarray(metrics.posterior_mean_code(jnp.log(probs), jnp.asarray(mean)))

    def classify(self, images) -> np.ndarray:
        """int [N]: argmax_y w(y | x) (paper eq. 20)."""
        return np.argmax(self.encode(images)[0], axis=-1)

    def decode(self, z) -> np.ndarray:
        """[N, H, W, C] in [0, 1]: the decoder mean D(z) of codes z [N, d]."""
        return self._functions.decode_np(self._state, z)

    def sample(self, key: jax.Array, labels: Sequence[int]) -> np.ndarray:
        """[N, H, W, C]: decoded draws z ~ N(mu0_y, diag(v0_y)) from the given components."""
        components = jnp.asarray(labels, jnp.int32)
        noise = jax.random.normal(key, (components.shape[0], self.prior.latent_dim))
        z = self.prior.means[components] + jnp.sqrt(self.prior.variances[components]) * noise
        return self.decode(z)


def load_run(workdir: str, point: int | str | None = None) -> Run:
    """Restores one model of a trained workdir (the newest checkpoint that restores).

    Args:
      workdir: a training run's directory.
      point: for a grid, the model's index or name (e.g. "lambda1=10_lambda2=1.1");
        None for a single run.

    Returns:
      A Run.
    """
    config = stored_config(workdir)
    record = read_record(workdir)
    points = record["points"]
    names = [configuration.point_name(p) for p in points]
    if point is None:
        if len(points) > 1:
            raise ValueError(
                f"{workdir} holds a grid of {len(points)} models: pass point= one "
                f"of 0..{len(points) - 1} or a name: {names}"
            )
        index = 0
    elif isinstance(point, str):
        if point not in names:
            raise ValueError(f"no point {point!r} in {workdir}; its points are {names}")
        index = names.index(point)
    else:
        if not 0 <= int(point) < len(points):
            raise ValueError(f"point {point} out of range: {workdir} has {len(points)} models")
        index = int(point)
    dataset = record["dataset"]
    class_names = tuple(dataset["class_names"])
    image_shape = tuple(dataset["train_images"]["shape"][1:])
    if tuple(config.data.classes):
        class_names = tuple(class_names[c] for c in config.data.classes)
    num_classes = len(class_names)
    model = configuration.build_model(config, num_classes, image_shape)
    optimizer = configuration.build_optimizer(config)
    settings = train.TrainSettings(  # only beta_mode shapes the state; no data here
        beta_mode=config.model.beta_mode,
        batch_unlabelled=1,
        batch_labelled=1,
        num_unlabelled=1,
        num_labelled=1,
    )
    stored_priors = [priors.prior_from_arrays(p) for p in record["priors"]]
    hparams = train.HParams(
        lambda1=jnp.zeros(()),
        lambda2=jnp.zeros(()),
        epsilon=jnp.ones(()),
        beta=jnp.asarray(config.model.beta, jnp.float32),
        prior=stored_priors[0],
    )
    create = jax.vmap(
        lambda key: train.create_train_state(key, model, optimizer, hparams, settings, image_shape)
    )
    keys = jax.random.split(jax.random.key(0), len(points))
    abstract = jax.eval_shape(create, keys)
    manager = checkpoints.make_manager(os.path.join(workdir, "checkpoints"))
    try:
        states, meta, epoch, _ = checkpoints.restore_latest(manager, abstract)
    finally:
        manager.close()
    prior = priors.prior_from_arrays(meta.get("priors", record["priors"])[index])
    return Run(
        config,
        points[index],
        prior,
        class_names,
        image_shape,
        model,
        train.unstack_tree(states, index),
        epoch,
    )
