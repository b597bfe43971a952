"""Analysis metrics, jit-compiled: negative SSIM and the activated-subspace statistics.

negative_ssim: 169 MNIST test images (28 x 28 x 1, the size of the paper's 13 x 13
decoded grid), all 169^2 = 28 561 ordered pairs, `metrics.negative_ssim` under jax.jit
(rows by lax.map, each row vmapped over all images; default rows_per_block and
rows_per_block = 13, the same images for both).
activated_subspace_by_class: mean/logvar [5 000, 10, 16] (normal draws, fixed seed),
labels [5 000] in 0..9, under jax.jit (per-class masked moments, no loop over classes).
Times are after compilation (compile time recorded separately), median/min/max.

  python -m bench.analysis [--quick] [--repeats N]
"""

from __future__ import annotations

import functools
import time

from bench import common

import jax
import jax.numpy as jnp
import numpy as np

from exon_jax import batching
from exon_jax import metrics

NUM_IMAGES = 169
NUM_INPUTS, K, D = 5_000, 10, 16


def timed_jit(fn, args, reps):
    jitted = jax.jit(fn)
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    stats = common.timeit(lambda: compiled(*args), repeats=reps, warmup=2)
    return compiled, compile_s, stats


def main():
    args = common.parse_args(__doc__)
    reps = common.repeats(args, full=20, quick=5)
    images = batching.scale_images(common.mnist_dataset().test.images[:NUM_IMAGES])
    images = jax.device_put(images)
    results = {}
    for block in (None, 13):
        fn = functools.partial(metrics.negative_ssim, rows_per_block=block)
        compiled, compile_s, stats = timed_jit(fn, (images,), reps)
        value = float(compiled(images))
        results[f"negative_ssim_rows_per_block_{block}"] = {
            "images": NUM_IMAGES,
            "pairs": NUM_IMAGES**2,
            "shape": list(images.shape),
            "rows_per_block": block,
            "compile_s": compile_s,
            "time": stats,
            "pairs_per_s": NUM_IMAGES**2 / stats["median_s"],
            "value": value,
            "xla_flops": common.xla_flops(compiled),
        }

    rng = np.random.default_rng(0)
    mean = jnp.asarray(rng.normal(size=(NUM_INPUTS, K, D)).astype(np.float32))
    logvar = jnp.asarray(rng.normal(scale=0.5, size=(NUM_INPUTS, K, D)).astype(np.float32))
    labels = jnp.asarray(rng.integers(0, K, size=NUM_INPUTS).astype(np.int32))
    fn = functools.partial(metrics.activated_subspace_by_class, num_classes=K, threshold=0.1)
    compiled, compile_s, stats = timed_jit(fn, (mean, logvar, labels), reps)
    ratio, mask = compiled(mean, logvar, labels)
    results["activated_subspace_by_class"] = {
        "inputs": NUM_INPUTS,
        "num_classes": K,
        "latent_dim": D,
        "compile_s": compile_s,
        "time": stats,
        "activated_dims": int(jnp.sum(mask)),
        "mean_ratio": float(jnp.mean(ratio)),
        "xla_flops": common.xla_flops(compiled),
    }

    table = []
    for block in (None, 13):
        r = results[f"negative_ssim_rows_per_block_{block}"]
        table.append(
            common.row(
                f"negative SSIM, 169 images / 28 561 pairs (rows_per_block={block})",
                common.sig(r["time"]["median_s"] * 1e3),
                "ms",
                f"min {common.sig(r['time']['min_s'] * 1e3)}, max {common.sig(r['time']['max_s'] * 1e3)}; "
                f"compile {common.sig(r['compile_s'], 3)} s",
            )
        )
    r = results["activated_subspace_by_class"]
    table.append(
        common.row(
            "activated subspace by class, 5 000 x 10 x 16",
            common.sig(r["time"]["median_s"] * 1e3),
            "ms",
            f"min {common.sig(r['time']['min_s'] * 1e3)}, max {common.sig(r['time']['max_s'] * 1e3)}; "
            f"compile {common.sig(r['compile_s'], 3)} s",
        )
    )
    ns = results["negative_ssim_rows_per_block_None"]
    summary = (
        f"negative SSIM (28 561 pairs) {ns['time']['median_s'] * 1e3:.1f} ms; "
        f"rows_per_block=13 {results['negative_ssim_rows_per_block_13']['time']['median_s'] * 1e3:.1f} ms; "
        f"activated subspace (5 000 inputs) {r['time']['median_s'] * 1e3:.2f} ms"
    )
    common.write_json(
        "analysis",
        {"quick": args.quick, "repeats": reps, "warmup": 2, "results": results, "table": table},
        summary,
    )


if __name__ == "__main__":
    main()
