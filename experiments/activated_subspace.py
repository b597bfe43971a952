"""The activated latent subspace of a trained run with a latent dim > 2 (no training).

Paper Section 3.2 and 4.2. For every model (grid point) of `--workdir`
(configs/mnist_blocks.py, configs/cifar10.py, configs/cifar10_epsilon.py), restored
from its latest checkpoint:

- F statistics per class over the TRAINING inputs of the class (up to
  `--per_class` of each), F_kj = Var_x[mu_kj(x)] / E_x[exp(logvar_kj(x))], and the
  activated dims F_kj > config.analysis.activation_threshold (delta, 0.1);
- the focus classes `config.analysis.classes` (default automobile and horse, the
  paper's; label indices or names), a = the first, b = the second;
- figures in `<out>/<grid point>/` (`<out>` = `<workdir>/figures` by default), PNG and PDF:
  `activation_bars_train.png` (F of every class, Figure 14), `activation_bars_<a>.png`
  (Figure 5); `noise_probe.png` (Figures 6, 11, 12: for the first test image of each
  focus class, the image, the decoding of mu_k(x), then decodings with U(-1.5, 1.5)
  noise on the activated dims of k, and, as the control, on the other dims; when every
  dim is activated the control noises the half of the dims with the lowest F, so
  its codes still differ); `interpolation.png` (Figures 1 and 10: a -> a, b -> b and
  a -> b, 11 steps between mu_k(x) of two test images); `traversal.png` (Figure 13:
  the two most activated axes of a and of b set from -2 to 2);
- for epsilon sweeps (Figure 7) `epsilon_trend.png`: the activated dims of class a
  (and the mean over classes) and the diversity, the negative SSIM (eq. 19) of the
  reconstructions D(mu_a(x_i)) of the first grid_size^2 training images x_i of class
  a, against epsilon; `epsilon_reconstructions.png`: D(mu_k(x)) of two test images of
  a and of b for every epsilon;
- `activated_subspace.json`: per model epsilon, activated counts per class (by class
  name), the mean count, the class-a diversity, the mean absolute pixel change caused
  by noise on the activated dims vs the control dims, and the trend over epsilon.

  python -m experiments.activated_subspace --workdir=workdirs/mnist_blocks
  python -m experiments.activated_subspace --workdir=workdirs/cifar10_epsilon --per_class=1000
"""

from __future__ import annotations

import os

from experiments import common

import jax
import jax.numpy as jnp
import numpy as np

from exon_jax import analysis, configuration, figures, metrics, plots
from exon_jax import batching

INTERPOLATION_STEPS = 11
TRAVERSAL_STEPS = 9
TOP_AXES = 2
SHOWN_PER_CLASS = 2  # test images of each focus class (interpolation ends, Figure 7 right)


def training_inputs(dataset, per_class: int):
    """The first `per_class` training images of every class (class-sorted), and labels."""
    labels = np.asarray(dataset.train.labels)
    index = np.concatenate(
        [np.flatnonzero(labels == k)[:per_class] for k in range(dataset.num_classes)]
    )
    return dataset.train.images[index], labels[index].astype(np.int32)


def focus_classes(entries, class_names) -> list[int]:
    """Label indices of `config.analysis.classes` (ints are indices, strings class names)."""
    entries = tuple(entries) if not isinstance(entries, (str, int)) else (entries,)
    if not entries:
        raise configuration.ConfigError("config.analysis.classes: name at least one class")
    chosen = []
    for entry in entries:
        if isinstance(entry, str) and entry in class_names:
            chosen.append(list(class_names).index(entry))
        elif isinstance(entry, (int, np.integer)) and 0 <= int(entry) < len(class_names):
            chosen.append(int(entry))
        else:
            raise configuration.ConfigError(
                f"config.analysis.classes: {entry!r} is neither a class name of this data set "
                f"{list(class_names)} nor a label index in [0, {len(class_names)})"
            )
    return chosen


def test_picks(test_labels: np.ndarray, classes: list[int]) -> dict[int, np.ndarray]:
    """The first SHOWN_PER_CLASS test-image indices of every focus class."""
    picks = {k: np.flatnonzero(test_labels == k)[:SHOWN_PER_CLASS] for k in classes}
    for k, found in picks.items():
        if found.size < SHOWN_PER_CLASS:
            raise ValueError(
                f"class {k} has {found.size} test image(s); the figures need {SHOWN_PER_CLASS}"
            )
    return picks


def control_dims(mask: np.ndarray, ratios: np.ndarray) -> np.ndarray:
    """The control dims of a noise probe: the non-activated dims, or, when every dim is
    activated, the half of the dims (at least one) with the lowest F."""
    if not mask.all():
        return ~mask
    control = np.zeros_like(mask)
    control[np.argsort(np.nan_to_num(ratios), kind="stable")[: max(1, mask.size // 2)]] = True
    return control


def trend_direction(x, y) -> dict:
    """How y moves as x grows: Spearman rank correlation, log-slope and step signs."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    order = np.argsort(x)
    x, y = x[order], y[order]
    steps = np.diff(y)
    if np.allclose(steps, 0.0):
        direction = "flat"
    elif np.all(steps >= 0):
        direction = "increasing"
    elif np.all(steps <= 0):
        direction = "decreasing"
    else:
        direction = "mixed"

    def ranks(v):
        sorted_v = np.sort(v)
        return np.array([np.mean(np.flatnonzero(sorted_v == e)) for e in v])

    rx, ry = ranks(x), ranks(y)
    spread = np.std(rx) * np.std(ry)
    rho = (
        float(np.mean((rx - rx.mean()) * (ry - ry.mean())) / spread) if spread > 0 else float("nan")
    )
    slope = float(np.polyfit(np.log(x), y, 1)[0]) if len(x) > 1 and np.all(x > 0) else float("nan")
    more = None if not np.isfinite(rho) or rho == 0 else bool(rho > 0)
    return {
        "direction": direction,
        "spearman": rho,
        "slope_per_log_unit": slope,
        "larger_is_higher": more,
        "first": float(y[0]),
        "last": float(y[-1]),
    }


def analyse_model(
    fns, state, exp, train_set, picks, classes, threshold, noise_scale, num_noise, seed
) -> dict:
    """All numbers and decodings of one model (no drawing)."""
    train_images, train_labels = train_set
    num_classes, size = exp.dataset.num_classes, exp.analysis.grid_size
    _, mean, logvar = fns.encode(state, train_images)
    ratios, mask = jax.device_get(
        jax.jit(metrics.activated_subspace_by_class, static_argnames="num_classes")(
            mean, logvar, train_labels, num_classes=num_classes, threshold=threshold
        )
    )
    a, b = classes[0], classes[min(1, len(classes) - 1)]
    # Figure 7: reconstructions of class-a training images through component a.
    own_a = np.asarray(mean)[np.flatnonzero(train_labels == a)[: size * size], a]
    diversity = float(jax.jit(metrics.negative_ssim)(fns.decode(state, own_a)))
    del mean, logvar

    test_index = np.concatenate([picks[k] for k in classes])
    images = exp.dataset.test.images[test_index]
    _, test_mean, _ = fns.encode(state, images)
    own = {
        k: np.asarray(test_mean)[[int(np.flatnonzero(test_index == i)[0]) for i in picks[k]], k]
        for k in classes
    }  # mu_k(x) of the class-k images, [2, d]
    blocks = {f"own/{k}": own[k] for k in classes}
    controls = {}
    for p, k in enumerate(classes):
        key_active, key_control = jax.random.split(jax.random.fold_in(jax.random.key(seed), p))
        controls[k] = control_dims(mask[k], ratios[k])
        code = jnp.asarray(own[k][0])
        blocks[f"probe/{k}/active"] = analysis.noise_probe(
            key_active, code, jnp.asarray(mask[k]), noise_scale, num_noise
        )[0]
        blocks[f"probe/{k}/control"] = analysis.noise_probe(
            key_control, code, jnp.asarray(~controls[k]), noise_scale, num_noise
        )[1]
    for tag, start, end in (
        ("within_a", own[a][0], own[a][1]),
        ("within_b", own[b][0], own[b][1]),
        ("between", own[a][0], own[b][0]),
    ):
        blocks[f"interp/{tag}"] = analysis.interpolate(
            jnp.asarray(start), jnp.asarray(end), INTERPOLATION_STEPS
        )
    axes = {}
    for k in dict.fromkeys((a, b)):
        axes[k] = [int(j) for j in analysis.top_activated_axes(jnp.asarray(ratios[k]), TOP_AXES)]
        for j in axes[k]:
            blocks[f"traverse/{k}/{j}"] = analysis.traversal(
                jnp.asarray(own[k][0]), j, TRAVERSAL_STEPS
            )
    names = list(blocks)
    codes = [np.asarray(blocks[n], np.float32) for n in names]
    decoded = fns.decode_np(state, np.concatenate(codes))
    out = dict(zip(names, np.split(decoded, np.cumsum([c.shape[0] for c in codes])[:-1])))

    per_probe = []
    for k in classes:
        base = out[f"own/{k}"][:1]
        per_probe.append(
            {
                "test_index": int(picks[k][0]),
                "class": exp.dataset.class_names[k],
                "active_dims": int(mask[k].sum()),
                "control_dims": int(controls[k].sum()),
                "control_is_complement": bool(np.array_equal(controls[k], ~mask[k])),
                "active": float(np.mean(np.abs(out[f"probe/{k}/active"] - base))),
                "inactive": float(np.mean(np.abs(out[f"probe/{k}/control"] - base))),
            }
        )
    return {
        "ratios": ratios,
        "mask": mask,
        "controls": controls,
        "diversity": diversity,
        "diversity_images": int(own_a.shape[0]),
        "decoded": out,
        "axes": axes,
        "per_probe": per_probe,
        "inputs": np.asarray(batching.scale_images(images)),
        "test_index": test_index,
    }


def draw_model(exp, result, classes, threshold, noise_scale, directory) -> list[str]:
    """The per-model figures of `analyse_model`'s result into `directory`."""
    names = exp.dataset.class_names
    out, ratios, written = result["decoded"], result["ratios"], []
    a, b = classes[0], classes[min(1, len(classes) - 1)]

    def save(fig, name):
        written.append(plots.save(fig, os.path.join(directory, name)))

    save(
        plots.activation_bars(
            ratios, names, threshold, title="activation ratio F per class (training inputs)"
        ),
        "activation_bars_train.png",
    )
    save(
        plots.activation_bars(ratios[a], [names[a]], threshold, ncols=1),
        f"activation_bars_{names[a]}.png",
    )
    rows, titles = [], []
    for p, k in enumerate(classes):
        head = np.concatenate([result["inputs"][p * SHOWN_PER_CLASS][None], out[f"own/{k}"][:1]])
        active, control = int(result["mask"][k].sum()), int(result["controls"][k].sum())
        control_title = (
            f"{names[k]}: noise on the {control} other dims"
            if np.array_equal(result["controls"][k], ~result["mask"][k])
            else f"{names[k]}: noise on the {control} lowest-F dims (all pass delta)"
        )
        rows += [
            np.concatenate([head, out[f"probe/{k}/active"]]),
            np.concatenate([head, out[f"probe/{k}/control"]]),
        ]
        titles += [f"{names[k]}: noise on {active} activated dims", control_title]
    save(
        plots.interpolation_strips(
            rows,
            titles,
            title=f"input, decoded $\\mu_k(x)$, then + U(-{noise_scale:g}, {noise_scale:g}) noise",
        ),
        "noise_probe.png",
    )
    save(
        plots.interpolation_strips(
            [out["interp/within_a"], out["interp/within_b"], out["interp/between"]],
            [f"{names[a]} -> {names[a]}", f"{names[b]} -> {names[b]}", f"{names[a]} -> {names[b]}"],
            title="interpolation between $\\mu_k(x)$ of two test images",
        ),
        "interpolation.png",
    )
    rows, titles = [], []
    for k, axes in result["axes"].items():
        for j in axes:
            rows.append(out[f"traverse/{k}/{j}"])
            titles.append(f"{names[k]}, axis {j} (F = {ratios[k, j]:.2g})")
    save(
        plots.interpolation_strips(
            rows,
            titles,
            title=f"one axis set from "
            f"{analysis.TRAVERSAL_LOW:g} to {analysis.TRAVERSAL_HIGH:g}, "
            "the others fixed",
        ),
        "traversal.png",
    )
    return written


def model_summary(exp, point, result, classes) -> dict:
    """The JSON entry of one model."""
    names = exp.dataset.class_names
    counts = result["mask"].sum(axis=1)
    per_probe = result["per_probe"]
    active = float(np.mean([p["active"] for p in per_probe]))
    inactive = float(np.mean([p["inactive"] for p in per_probe]))
    return {
        "name": configuration.point_name(point),
        "point": point,
        "epsilon": float(point.get("epsilon", np.asarray(exp.hparams.epsilon)[0])),
        "activated_counts": {n: int(c) for n, c in zip(names, counts)},
        "mean_activated_count": float(counts.mean()),
        "focus_activated_count": int(counts[classes[0]]),
        "activated_dims": {
            n: [int(j) for j in np.flatnonzero(m)] for n, m in zip(names, result["mask"])
        },
        "top_axes": {names[k]: v for k, v in result["axes"].items()},
        "diversity": {
            "class": names[classes[0]],
            "training_images": result["diversity_images"],
            "negative_ssim": result["diversity"],
        },
        "pixel_change": {
            "active_noise": active,
            "inactive_noise": inactive,
            "ratio_active_to_inactive": active / inactive if inactive > 0 else float("inf"),
            "per_probe": per_probe,
        },
        "F": {n: r for n, r in zip(names, result["ratios"])},
    }


def epsilon_trend(models: list[dict]) -> dict | None:
    """Figure 7's numbers over epsilon (means over models sharing an epsilon), or None."""
    epsilons = sorted({m["epsilon"] for m in models})
    if len(epsilons) < 2:
        return None

    def over(value):
        return [float(np.mean([value(m) for m in models if m["epsilon"] == e])) for e in epsilons]

    focus = over(lambda m: m["focus_activated_count"])
    mean = over(lambda m: m["mean_activated_count"])
    nssim = over(lambda m: m["diversity"]["negative_ssim"])
    dims = trend_direction(epsilons, focus)
    return {
        "epsilon": epsilons,
        "class": models[0]["diversity"]["class"],
        "focus_activated_count": focus,
        "mean_activated_count": mean,
        "negative_ssim": nssim,
        "activated_count_trend": dims,
        "mean_activated_count_trend": trend_direction(epsilons, mean),
        "negative_ssim_trend": trend_direction(epsilons, nssim),
        "larger_epsilon_activates_more_dims": dims["larger_is_higher"],
    }


def draw_trend(exp, trend, results, classes, threshold, directory) -> list[str]:
    """Figure 7: left, activated dims and diversity vs epsilon; right, reconstructions."""
    names = exp.dataset.class_names
    epsilons = trend["epsilon"]
    cls = trend["class"]
    fig = plots.trend(
        epsilons,
        {
            f"activated dims, {cls}": trend["focus_activated_count"],
            "activated dims, mean over classes": trend["mean_activated_count"],
        },
        "epsilon",
        f"activated dims (F > {threshold:g})",
        secondary={f"negative SSIM, {cls} training reconstructions": trend["negative_ssim"]},
        secondary_ylabel="negative SSIM (eq. 19)",
        logx=min(epsilons) > 0,
        title=f"Figure 7: activated dims and diversity of {cls} vs epsilon",
    )
    written = [plots.save(fig, os.path.join(directory, "epsilon_trend.png"))]
    shown = classes[:2]
    inputs = results[0][1]["inputs"][: len(shown) * SHOWN_PER_CLASS]
    rows, titles = [inputs], ["input"]
    for point, result in results:
        rows.append(np.concatenate([result["decoded"][f"own/{k}"] for k in shown]))
        titles.append(figures.point_title(point))
    fig = plots.interpolation_strips(
        rows,
        titles,
        title="reconstructions $D(\\mu_k(x))$ of " + " and ".join(names[k] for k in shown),
    )
    written.append(plots.save(fig, os.path.join(directory, "epsilon_reconstructions.png")))
    return written


def print_summary(report: dict) -> None:
    print(
        f"{len(report['models'])} model(s), d = {report['latent_dim']}, "
        f"delta = {report['threshold']:g}, checkpoint of epoch {report['epoch']}"
    )
    for m in report["models"]:
        pc = m["pixel_change"]
        print(
            f"  {m['name']} (epsilon {m['epsilon']:g}): mean activated dims "
            f"{m['mean_activated_count']:.2f}; {m['diversity']['class']} diversity (negative "
            f"SSIM) {m['diversity']['negative_ssim']:.4f}; pixel change active "
            f"{pc['active_noise']:.4f} vs control {pc['inactive_noise']:.4f}"
        )
        print("    per class: " + ", ".join(f"{n} {c}" for n, c in m["activated_counts"].items()))
    trend = report["epsilon_trend"]
    if trend is not None:
        t = trend["activated_count_trend"]
        print(
            f"  epsilon {trend['epsilon']}: activated dims of {trend['class']} "
            f"{[round(c, 2) for c in trend['focus_activated_count']]} ({t['direction']}, "
            f"Spearman {t['spearman']:.2f}); larger epsilon activates more dims: "
            f"{trend['larger_epsilon_activates_more_dims']}"
        )


def main(
    workdir: str,
    out: str | None = None,
    dataset=None,
    per_class: int = 1000,
    num_noise: int = 8,
    noise_scale: float = 1.5,
    seed: int = 0,
) -> dict:
    """Restores `workdir` and writes the activated-subspace figures and JSON into `out`.

    Args:
      workdir: a training run's directory with latent dim > 2.
      out: output directory (default `<workdir>/figures`).
      dataset: arrays to use instead of loading the run's data set (tests).
      per_class: training inputs per class for the F statistics.
      num_noise: noisy codes per probe and kind.
      noise_scale: a of U(-a, a) (paper Figure 6: 1.5).
      seed: PRNG seed of the noise.

    Returns:
      The content of activated_subspace.json plus "figures" (paths written) and "json_path".
    """
    directory = common.output_dir(workdir, out)
    exp, states, meta = common.restore(workdir, dataset)
    dim = exp.analysis.latent_dim
    if dim <= 2:
        raise ValueError(
            f"{workdir}: latent dim {dim}; the activated subspace needs a latent dim "
            "> 2 (use experiments/mnist_figures.py for 2-D runs)"
        )
    names = exp.dataset.class_names
    threshold = exp.analysis.activation_threshold
    classes = focus_classes(exp.analysis.classes, names)
    train_set = training_inputs(exp.dataset, per_class)
    picks = test_picks(np.asarray(exp.dataset.test.labels), classes)

    fns = figures.ModelFunctions(exp.model)
    results, written = [], []
    for g, point in enumerate(exp.points):
        result = analyse_model(
            fns,
            figures.model_state(states, g),
            exp,
            train_set,
            picks,
            classes,
            threshold,
            noise_scale,
            num_noise,
            seed,
        )
        results.append((point, result))
        sub = (
            directory
            if exp.num_models == 1
            else os.path.join(directory, configuration.point_name(point))
        )
        written += draw_model(exp, result, classes, threshold, noise_scale, sub)
    models = [model_summary(exp, point, result, classes) for point, result in results]
    trend = epsilon_trend(models)
    if trend is not None:
        written += draw_trend(exp, trend, results, classes, threshold, directory)

    report = {
        "workdir": os.path.abspath(workdir),
        "epoch": int(meta["epoch"]),
        "dataset": exp.dataset.name,
        "latent_dim": dim,
        "threshold": threshold,
        "classes": [names[k] for k in classes],
        "train_inputs_per_class": {n: int(np.sum(train_set[1] == k)) for k, n in enumerate(names)},
        "noise_scale": noise_scale,
        "class_names": list(names),
        "models": models,
        "epsilon_trend": trend,
    }
    json_path = common.write_json(os.path.join(directory, "activated_subspace.json"), report)
    for path in written + [json_path]:
        print(path)
    print_summary(report)
    return {**common.to_jsonable(report), "figures": written, "json_path": json_path}


def _extra_flags(parser):
    parser.add_argument(
        "--per_class", type=int, default=1000, help="training inputs per class for the F statistics"
    )
    parser.add_argument("--num_noise", type=int, default=8, help="noisy codes per probe and kind")
    parser.add_argument("--noise_scale", type=float, default=1.5, help="a of U(-a, a)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise")


if __name__ == "__main__":
    common.cli(__doc__.splitlines()[0], main, _extra_flags)
