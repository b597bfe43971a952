"""The activated latent subspace of a trained run with a latent dim > 2 (no training).

Paper Section 3.2 and 4.2. For every model (grid point) of `--workdir`
(configs/mnist_blocks.py, an epsilon sweep, configs/cifar10.py), restored from its
latest checkpoint:

- F statistics per class over the TRAINING inputs of the class (up to
  `--per_class` of each), F_kj = Var_x[mu_kj(x)] / E_x[exp(logvar_kj(x))], and the
  activated dims F_kj > config.analysis.activation_threshold (delta, 0.1);
- figures in `<out>/<grid point>/` (`<out>` = `<workdir>/figures` by default):
  `activation_bars_train.png` (F per class, Figures 5 and 14);
  `noise_probe.png` (Figure 6: a test image, the decoding of its posterior mean
  code mu_y(x), then decodings of the code plus U(-1.5, 1.5) noise on the activated
  dims of its class, and on the other dims); `interpolation.png` (Figures 1 and 10:
  within a class and between two classes, 11 steps between posterior-mean codes of
  two test images); `traversal.png` (Figure 13: the two most activated axes of two
  classes set to values from -2 to 2);
- for epsilon sweeps `epsilon_trend.png` (Figure 7: mean activated-dim count and
  negative SSIM of the reconstructions of the first 169 (13 x 13) test images
  against epsilon);
- `activated_subspace.json`: per model epsilon, activated counts per class (by class
  name), the mean count, negative SSIM of reconstructions, the mean absolute pixel
  change caused by noise on the activated dims vs on the other dims, and the trend
  over epsilon (does a larger epsilon activate more dims?) computed from the counts.

  python experiments/activated_subspace.py --workdir=workdirs/mnist_blocks
  python experiments/activated_subspace.py --workdir=workdirs/cifar10 --per_class=1000
"""
from __future__ import annotations

import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments import common  # noqa: E402  (puts the repository root on the path)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from exon_jax import analysis, configuration, metrics, plots, train  # noqa: E402
from exon_jax import data as data_lib  # noqa: E402

INTERPOLATION_STEPS = 11
TRAVERSAL_STEPS = 9
TOP_AXES = 2


class ModelFunctions:
    """Jitted encode/decode taking a model's variables as an argument.

    Unlike `figures.model_functions`, which closes over one model's parameters
    (a fresh compilation per model), these compile once per input shape and serve
    every model of the grid. Encoding runs in fixed-size chunks (the last one
    padded), so any number of images costs one compilation.
    """

    def __init__(self, exp, chunk: int = 500):
        model = exp.model
        self.chunk = chunk
        self._encode = jax.jit(lambda v, x: model.apply(
            v, data_lib.scale_images(x), train=False, method=model.encode))
        self._decode = jax.jit(lambda v, z: model.apply(v, z, train=False, method=model.decode))

    @staticmethod
    def variables(states, index: int):
        state = train.unstack_tree(states, index)
        return {"params": state.params["model"], "batch_stats": state.batch_stats}

    def encode(self, variables, images: np.ndarray):
        """uint8 [N, H, W, C] -> (logits [N, K], mean [N, K, d], logvar [N, K, d]) on the host."""
        n = images.shape[0]
        pad = -n % self.chunk
        padded = np.concatenate([images, np.zeros((pad, *images.shape[1:]), images.dtype)])
        outs = [jax.device_get(self._encode(variables, padded[s:s + self.chunk]))
                for s in range(0, padded.shape[0], self.chunk)]
        return tuple(np.concatenate([o[i] for o in outs])[:n] for i in range(3))

    def decode(self, variables, codes) -> np.ndarray:
        return np.asarray(self._decode(variables, jnp.asarray(codes, jnp.float32)))


def training_inputs(dataset, per_class: int):
    """The first `per_class` training images of every class (class-sorted), and labels."""
    labels = np.asarray(dataset.train.labels)
    index = np.concatenate([np.flatnonzero(labels == k)[:per_class]
                            for k in range(dataset.num_classes)])
    return dataset.train.images[index], labels[index].astype(np.int32)


def pick_classes(test_labels: np.ndarray, num_classes: int, num_probes: int):
    """Probe classes spread over the labels, and the pair (a, b) for interpolations and
    traversals; only classes with at least two test images are used."""
    usable = [k for k in range(num_classes) if np.sum(test_labels == k) >= 2]
    if not usable:
        raise ValueError("the test set has no class with two images")
    spread = np.unique(np.linspace(0, len(usable) - 1, min(num_probes, len(usable))).round())
    probes = [usable[int(i)] for i in spread]
    pair = (usable[0], usable[len(usable) // 2]) if len(usable) > 1 else (usable[0], usable[0])
    return probes, pair


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
    rho = float(np.mean((rx - rx.mean()) * (ry - ry.mean())) / spread) if spread > 0 else float("nan")
    slope = float(np.polyfit(np.log(x), y, 1)[0]) if len(x) > 1 and np.all(x > 0) else float("nan")
    more = None if not np.isfinite(rho) or rho == 0 else bool(rho > 0)
    return {"direction": direction, "spearman": rho, "slope_per_log_unit": slope,
            "larger_is_higher": more, "first": float(y[0]), "last": float(y[-1])}


def analyse_model(fns: ModelFunctions, variables, exp, train_images, train_labels, test_pick,
                  probes, pair, threshold, noise_scale, num_noise, seed):
    """All numbers and decodings of one model (no drawing)."""
    num_classes = exp.dataset.num_classes
    _, mean, logvar = fns.encode(variables, train_images)
    ratios, mask = jax.device_get(jax.jit(
        metrics.activated_subspace_by_class, static_argnames="num_classes")(
            mean, logvar, train_labels, num_classes=num_classes, threshold=threshold))
    del mean, logvar

    images, labels, slots = test_pick
    logits, mean, _ = fns.encode(variables, images)
    recon_codes = np.asarray(metrics.posterior_mean_code(logits[:slots["recon"]],
                                                         mean[:slots["recon"]]))

    def own_code(i):  # mu_y(x): the component of the image's own class
        return mean[i, labels[i]]

    blocks, names = [recon_codes], ["recon"]
    for p, (i, k) in enumerate(slots["probes"]):
        on_active, on_inactive = analysis.noise_probe(
            jax.random.fold_in(jax.random.key(seed), p), jnp.asarray(own_code(i)),
            jnp.asarray(mask[k]), noise_scale, num_noise)
        blocks += [own_code(i)[None], np.asarray(on_active), np.asarray(on_inactive)]
        names += [f"probe{p}/base", f"probe{p}/active", f"probe{p}/inactive"]
    (a1, a2), (b1, b2) = slots["pair_a"], slots["pair_b"]
    for tag, start, end in (("within_a", a1, a2), ("within_b", b1, b2), ("between", a1, b1)):
        blocks.append(np.asarray(analysis.interpolate(jnp.asarray(own_code(start)),
                                                      jnp.asarray(own_code(end)),
                                                      INTERPOLATION_STEPS)))
        names.append(f"interp/{tag}")
    axes = {}
    for k, i in ((pair[0], a1), (pair[1], b1)):
        axes[k] = [int(j) for j in analysis.top_activated_axes(jnp.asarray(ratios[k]), TOP_AXES)]
        for j in axes[k]:
            blocks.append(np.asarray(analysis.traversal(jnp.asarray(own_code(i)), j,
                                                        TRAVERSAL_STEPS)))
            names.append(f"traverse/{k}/{j}")
    decoded = fns.decode(variables, np.concatenate(blocks))
    splits = np.cumsum([b.shape[0] for b in blocks])[:-1]
    out = dict(zip(names, np.split(decoded, splits)))

    nssim = float(jax.jit(metrics.negative_ssim)(out["recon"]))
    per_probe = []
    for p, (i, k) in enumerate(slots["probes"]):
        base = out[f"probe{p}/base"]
        per_probe.append({
            "test_index": int(slots["test_index"][i]), "class": exp.dataset.class_names[k],
            "active_dims": int(mask[k].sum()),
            "active": float(np.mean(np.abs(out[f"probe{p}/active"] - base))),
            "inactive": float(np.mean(np.abs(out[f"probe{p}/inactive"] - base)))})
    return {"ratios": ratios, "mask": mask, "nssim": nssim, "decoded": out, "axes": axes,
            "per_probe": per_probe}


def draw_model(exp, result, images, slots, pair, threshold, noise_scale, directory):
    names = exp.dataset.class_names
    scaled = images.astype(np.float32) / 255.0
    out, written = result["decoded"], []
    written.append(plots.save(plots.activation_bars(result["ratios"], names, threshold),
                              os.path.join(directory, "activation_bars_train.png")))
    rows, titles = [], []
    dim = result["mask"].shape[1]
    for p, (i, k) in enumerate(slots["probes"]):
        head = np.concatenate([scaled[i:i + 1], out[f"probe{p}/base"]])
        active = int(result["mask"][k].sum())
        rows += [np.concatenate([head, out[f"probe{p}/active"]]),
                 np.concatenate([head, out[f"probe{p}/inactive"]])]
        titles += [f"{names[k]}: noise on {active} activated dims",
                   f"{names[k]}: noise on {dim - active} other dims"]
    fig = common.strips(rows, titles, f"input, decoded posterior mean, then + "
                        f"U(-{noise_scale:g}, {noise_scale:g}) noise")
    written.append(plots.save(fig, os.path.join(directory, "noise_probe.png")))
    a, b = names[pair[0]], names[pair[1]]
    fig = common.strips(
        [out["interp/within_a"], out["interp/within_b"], out["interp/between"]],
        [f"{a} -> {a}", f"{b} -> {b}", f"{a} -> {b}"],
        "interpolation between posterior-mean codes of two test images")
    written.append(plots.save(fig, os.path.join(directory, "interpolation.png")))
    rows, titles = [], []
    for k, axes in result["axes"].items():
        for j in axes:
            rows.append(out[f"traverse/{k}/{j}"])
            titles.append(f"{names[k]}, axis {j} (F={result['ratios'][k, j]:.2g})")
    fig = common.strips(rows, titles, f"one axis set from {analysis.TRAVERSAL_LOW:g} to "
                        f"{analysis.TRAVERSAL_HIGH:g}, the others fixed")
    written.append(plots.save(fig, os.path.join(directory, "traversal.png")))
    return written


def main(workdir: str, out: str | None = None, dataset=None, per_class: int = 1000,
         num_probes: int = 4, num_noise: int = 8, noise_scale: float = 1.5,
         seed: int = 0) -> dict:
    """Restores `workdir` and writes the activated-subspace figures and JSON into `out`.

    Args:
      workdir: a training run's directory with latent dim > 2.
      out: output directory (default `<workdir>/figures`).
      dataset: arrays to use instead of loading the run's data set (tests).
      per_class: training inputs per class for the F statistics.
      num_probes: test images probed with noise (one per class, spread over the classes).
      num_noise: noisy codes per probe and kind.
      noise_scale: a of U(-a, a) (paper Figure 6: 1.5).
      seed: PRNG seed of the noise.

    Returns:
      The content of activated_subspace.json plus "figures" (paths written).
    """
    directory = common.output_dir(workdir, out)
    exp, states, meta = common.restore(workdir, dataset)
    dim = exp.config.model.latent_dim
    if dim <= 2:
        raise ValueError(f"{workdir}: latent dim {dim}; the activated subspace needs a latent dim "
                         "> 2 (use experiments/mnist_figures.py for 2-D runs)")
    config, names = exp.config, exp.dataset.class_names
    threshold = float(config.analysis.activation_threshold)
    train_images, train_labels = training_inputs(exp.dataset, per_class)

    test_labels = np.asarray(exp.dataset.test.labels)
    probes, pair = pick_classes(test_labels, exp.dataset.num_classes, num_probes)
    first = {k: np.flatnonzero(test_labels == k)[:2] for k in set(probes) | set(pair)}
    # The image set of eq. 19 as `experiment.make_evaluate` builds it for latents > 2:
    # reconstructions of the first grid_size^2 (13 x 13 = 169) test images.
    num_recon = min(int(config.analysis.grid_size) ** 2, test_labels.size)
    extra = sorted({int(i) for k in first for i in first[k]})
    test_index = np.concatenate([np.arange(num_recon), extra]).astype(int)
    position = {int(t): num_recon + n for n, t in enumerate(extra)}
    slots = {"recon": num_recon, "test_index": test_index,
             "probes": [(position[int(first[k][0])], k) for k in probes],
             "pair_a": tuple(position[int(i)] for i in first[pair[0]]),
             "pair_b": tuple(position[int(i)] for i in first[pair[1]])}
    images = exp.dataset.test.images[test_index]
    test_pick = (images, test_labels[test_index], slots)

    fns = ModelFunctions(exp)
    models, written = [], []
    for g, point in enumerate(exp.points):
        result = analyse_model(fns, fns.variables(states, g), exp, train_images, train_labels,
                               test_pick, probes, pair, threshold, noise_scale, num_noise, seed)
        name = configuration.point_name(point)
        sub = directory if exp.num_models == 1 else os.path.join(directory, name)
        written += draw_model(exp, result, images, slots, pair, threshold, noise_scale, sub)
        counts = result["mask"].sum(axis=1)
        per_probe = result["per_probe"]
        active = float(np.mean([p["active"] for p in per_probe]))
        inactive = float(np.mean([p["inactive"] for p in per_probe]))
        models.append({
            "name": name, "point": point,
            "epsilon": float(point.get("epsilon", config.loss.epsilon)),
            "activated_counts": {n: int(c) for n, c in zip(names, counts)},
            "mean_activated_count": float(counts.mean()),
            "activated_dims": {n: [int(j) for j in np.flatnonzero(m)]
                               for n, m in zip(names, result["mask"])},
            "top_axes": {names[k]: v for k, v in result["axes"].items()},
            "negative_ssim_reconstructions": result["nssim"],
            "pixel_change": {"active_noise": active, "inactive_noise": inactive,
                             "ratio_active_to_inactive": active / inactive if inactive > 0
                             else float("inf"), "per_probe": per_probe},
            "F": {n: r for n, r in zip(names, result["ratios"])},
        })

    epsilons = sorted({m["epsilon"] for m in models})
    trend = None
    if len(epsilons) > 1:
        count = [float(np.mean([m["mean_activated_count"] for m in models if m["epsilon"] == e]))
                 for e in epsilons]
        nssim = [float(np.mean([m["negative_ssim_reconstructions"] for m in models
                                if m["epsilon"] == e])) for e in epsilons]
        dims = trend_direction(epsilons, count)
        trend = {"epsilon": epsilons, "mean_activated_count": count,
                 "negative_ssim_reconstructions": nssim,
                 "activated_count_trend": dims,
                 "negative_ssim_trend": trend_direction(epsilons, nssim),
                 "larger_epsilon_activates_more_dims": dims["larger_is_higher"]}
        fig = plots.trend(epsilons, {"activated dims (mean over classes)": count}, "epsilon",
                          "activated dims", secondary={"negative SSIM (reconstructions)": nssim},
                          secondary_ylabel="negative SSIM", logx=min(epsilons) > 0,
                          title=f"activated dims (F > {threshold:g}) and diversity vs epsilon")
        written.append(plots.save(fig, os.path.join(directory, "epsilon_trend.png")))

    report = {"workdir": os.path.abspath(workdir), "epoch": int(meta["epoch"]),
              "dataset": exp.dataset.name, "latent_dim": dim, "threshold": threshold,
              "train_inputs_per_class": {n: int(np.sum(train_labels == k))
                                         for k, n in enumerate(names)},
              "noise_scale": noise_scale, "class_names": list(names), "models": models,
              "epsilon_trend": trend}
    json_path = common.write_json(os.path.join(directory, "activated_subspace.json"), report)

    for path in written + [json_path]:
        print(path)
    print(f"{exp.num_models} model(s), d = {dim}, delta = {threshold:g}, "
          f"checkpoint of epoch {meta['epoch']}")
    for m in models:
        pc = m["pixel_change"]
        print(f"  {m['name']} (epsilon {m['epsilon']:g}): mean activated dims "
              f"{m['mean_activated_count']:.2f}; negative SSIM {m['negative_ssim_reconstructions']:.4f}; "
              f"pixel change active {pc['active_noise']:.4f} vs other {pc['inactive_noise']:.4f}")
        print("    per class: " + ", ".join(f"{n} {c}" for n, c in m["activated_counts"].items()))
    if trend is not None:
        t = trend["activated_count_trend"]
        print(f"  epsilon {epsilons}: mean activated dims {[round(float(c), 2) for c in trend['mean_activated_count']]} "
              f"({t['direction']}, Spearman {t['spearman']:.2f}); larger epsilon activates more dims: "
              f"{trend['larger_epsilon_activates_more_dims']}")
    return {**common.to_jsonable(report), "figures": written, "json_path": json_path}


def _extra_flags(parser):
    parser.add_argument("--per_class", type=int, default=1000,
                        help="training inputs per class for the F statistics")
    parser.add_argument("--num_probes", type=int, default=4, help="test images probed with noise")
    parser.add_argument("--num_noise", type=int, default=8, help="noisy codes per probe and kind")
    parser.add_argument("--noise_scale", type=float, default=1.5, help="a of U(-a, a)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise")


if __name__ == "__main__":
    common.cli(__doc__.splitlines()[0], main, _extra_flags)
