"""Test (and validation) evaluation of a run's G models, and its results files.

`make_evaluate` compiles one program for all G models; `summarise` turns its host
arrays into the per-model results; `write_results` writes results.json (and, for a
grid, sweep_results.json / .csv) from process 0 only.
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from exon_jax import analysis, configuration, metrics, parallel, train

NUM_RECONSTRUCTIONS = 8  # test images shown reconstructed in TensorBoard
RESULT_SCALARS = (
    "classification_error",
    "kl",
    "negative_ssim",
    "max_centre_distance_sd",
    "mean_inside_95",
    "beta",
)


def make_evaluate(
    model, latent_dim: int, grid_extent: float, grid_size: int, num_models: int, model_axis: str
):
    """The jitted G-model evaluation `(states, hparams, images, labels) -> dict of [G, ...]`.

    Per model: classification error (eq. 20), mean KL bound (eq. 18), negative SSIM
    (eq. 19) of the decoded grid_size x grid_size latent grid on [-extent, extent]^2
    (2-D latents; extent 0, `analysis.grid_extent`'s auto, keeps the paper's 15 here) or of
    the reconstructions of the first grid_size^2 images (other latents), with
    `negative_ssim_probe` [2] saying which (`negative_ssim_on`), design fidelity of the
    posterior codes, the codes [N, d], the decoded probe and the first NUM_RECONSTRUCTIONS
    reconstructions.
    """
    encode = train.make_eval_forward(model)
    grid_extent = grid_extent or analysis.GRID_EXTENT  # 0 (auto): the paper's [-15, 15]^2
    grid = analysis.latent_grid(grid_extent, grid_size)

    def evaluate_one(state, hparams, images, labels):
        logits, mean, logvar = encode(state, images)
        codes = metrics.posterior_mean_code(logits, mean)
        variables = {"params": state.params["model"], "batch_stats": state.batch_stats}
        probe = grid if latent_dim == 2 else codes[: grid.shape[0]]
        decoded = model.apply(variables, probe, train=False, method=model.decode)
        shown = codes[:NUM_RECONSTRUCTIONS]
        reconstructions = model.apply(variables, shown, train=False, method=model.decode)
        fidelity = metrics.design_fidelity(codes, labels, hparams.prior)
        return {
            "classification_error": metrics.classification_error(logits, labels),
            "kl": metrics.mean_kl(logits, mean, logvar, hparams.prior),
            "negative_ssim": metrics.negative_ssim(decoded),
            # [2] (grid half-width, or 0 for test codes; images decoded): `negative_ssim_on`
            "negative_ssim_probe": jnp.asarray(
                [grid_extent if latent_dim == 2 else 0.0, probe.shape[0]], jnp.float32
            ),
            "max_centre_distance": fidelity["max_centre_distance"],
            "mean_inside_95": fidelity["mean_inside_95"],
            "centre_distance": fidelity["centre_distance"],
            "inside_95": fidelity["inside_95"],
            "codes": codes,
            "decoded_probe": decoded,
            "reconstructions": reconstructions,
        }

    return jax.jit(train.over_models(evaluate_one, num_models, model_axis))


MAX_PARAMETER = 1e8  # |parameter| above this: diverged (sane weights stay far below 1e4)
CHECKED_METRICS = ("classification_error", "kl", "negative_ssim")  # must be finite


def parameter_health(params) -> tuple[np.ndarray, np.ndarray]:
    """([G] bool all finite, [G] largest |parameter|) of each model's floating parameters
    (leading model axis), on the host.

    Parameters on this process are read with NumPy (nothing compiled: the jitted reduction
    cost 1.1 s of XLA:CPU compilation a run); parameters sharded over processes go through
    `_sharded_parameter_health`, a collective every process must call.
    """
    leaves = [x for x in jax.tree.leaves(params) if jnp.issubdtype(x.dtype, jnp.floating)]
    if not all(getattr(x, "is_fully_addressable", True) for x in leaves):
        return parallel.to_host(_sharded_parameter_health(leaves))
    flat = [np.asarray(x, np.float32).reshape(x.shape[0], -1) for x in jax.device_get(leaves)]
    finite = np.all([np.isfinite(x).all(axis=1) for x in flat], axis=0)
    largest = np.max([np.abs(x).max(axis=1) for x in flat], axis=0)
    return finite, largest


@jax.jit
def _sharded_parameter_health(leaves: list[jax.Array]) -> tuple[jax.Array, jax.Array]:
    """`parameter_health` of [G, ...] floating leaves as one compiled reduction."""
    flat = [x.reshape(x.shape[0], -1) for x in leaves]
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x), axis=1) for x in flat]), axis=0)
    largest = jnp.max(jnp.stack([jnp.max(jnp.abs(x), axis=1) for x in flat]), axis=0)
    return finite, largest


def unsound_models(
    finite: np.ndarray, largest: np.ndarray, evaluated: dict[str, Any] | None
) -> dict[str, list[int]]:
    """{reason: model indices} for models whose parameters are non-finite or above
    MAX_PARAMETER, or (given `evaluated`) whose checked metrics are not finite; {} if none.

    Args:
      finite, largest: [G] `parameter_health` on the host.
      evaluated: `make_evaluate` outputs on the host, or None.
    """
    reasons: dict[str, list[int]] = {}
    for i in range(len(finite)):
        if not finite[i]:
            reasons.setdefault("non-finite parameters", []).append(i)
        elif largest[i] > MAX_PARAMETER:
            reasons.setdefault(
                f"parameters out of range (largest |parameter| {largest[i]:.3g} > "
                f"{MAX_PARAMETER:.0e}: the learning rate is likely too high)",
                [],
            ).append(i)
        elif evaluated is not None:
            bad = [k for k in CHECKED_METRICS if not np.isfinite(evaluated[k][i])]
            if bad:
                reasons.setdefault(f"non-finite evaluation ({', '.join(bad)})", []).append(i)
    return reasons


def scalar_row(values: dict[str, Any], index: int) -> dict[str, float]:
    """Model `index`'s scalar metrics from a dict of [G] (and larger) host arrays."""
    return {k: float(np.asarray(v)[index]) for k, v in values.items() if np.ndim(v) == 1}


def negative_ssim_on(probe) -> str:
    """What negative SSIM was computed on, from `negative_ssim_probe` [2] of one model:
    'decoded 13 x 13 latent grid on [-15, 15]^2' or 'reconstructions (decoded posterior-mean codes) of the
    first 169 test images'."""
    extent, count = float(probe[0]), int(round(float(probe[1])))
    if extent > 0:
        size = int(round(count**0.5))
        return f"decoded {size} x {size} latent grid on [-{extent:g}, {extent:g}]^2"
    return f"reconstructions (decoded posterior-mean codes) of the first {count} test images"


def summarise(
    points: Sequence[dict[str, Any]],
    betas,
    evaluated: dict[str, np.ndarray],
    validated: dict[str, np.ndarray] | None,
    *,
    dataset_name: str,
    epochs: int,
    train_seconds: float,
    devices: str,
) -> dict[str, Any]:
    """Per-model results: the paper's three metrics (with `negative_ssim_on`: what negative
    SSIM was computed on), design fidelity, final beta.

    Args:
      points: the G grid points.
      betas: [G] final betas.
      evaluated: test metrics of `make_evaluate` on the host.
      validated: the same on the validation hold-out, or None.
    """
    models = []
    for i, point in enumerate(points):
        row = {
            "name": configuration.point_name(point),
            "point": point,
            "classification_error": float(evaluated["classification_error"][i]),
            "kl": float(evaluated["kl"][i]),
            "negative_ssim": float(evaluated["negative_ssim"][i]),
            "max_centre_distance_sd": float(evaluated["max_centre_distance"][i]),
            "centre_distance_sd": [float(v) for v in evaluated["centre_distance"][i]],
            "mean_inside_95": float(evaluated["mean_inside_95"][i]),
            "beta": float(np.asarray(betas)[i]),
        }
        if "negative_ssim_probe" in evaluated:
            row["negative_ssim_on"] = negative_ssim_on(evaluated["negative_ssim_probe"][i])
        if validated is not None:
            row["validation_error"] = float(validated["classification_error"][i])
            row["validation_kl"] = float(validated["kl"][i])
        models.append(row)
    return {
        "dataset": dataset_name,
        "num_models": len(points),
        "epochs": int(epochs),
        "train_seconds": float(train_seconds),
        "devices": devices,
        "models": models,
    }


def write_results(workdir: str, results: dict[str, Any], tag: str = "") -> None:
    """results.json; for grids also sweep_results.json and .csv (one row a model). Process 0.

    Args:
      tag: "" for the run's own results; otherwise the files are results_<tag>.json (and
        sweep_results_<tag>.*), e.g. an evaluation on a subset that must not replace them.
    """
    if jax.process_index() != 0:
        return
    suffix = f"_{tag}" if tag else ""
    with open(os.path.join(workdir, f"results{suffix}.json"), "w") as f:
        json.dump(results, f, indent=2)
    if results["num_models"] > 1:
        with open(os.path.join(workdir, f"sweep_results{suffix}.json"), "w") as f:
            json.dump(results["models"], f, indent=2)
        fields = sorted({k for m in results["models"] for k in m["point"]})
        scalars = [s for s in (*RESULT_SCALARS, "validation_error") if s in results["models"][0]]
        with open(os.path.join(workdir, f"sweep_results{suffix}.csv"), "w") as f:
            f.write(",".join(["name", *fields, *scalars]) + "\n")
            for m in results["models"]:
                f.write(
                    ",".join(
                        [
                            m["name"],
                            *[str(m["point"].get(k, "")) for k in fields],
                            *[f"{m[s]:.6g}" for s in scalars],
                        ]
                    )
                    + "\n"
                )
