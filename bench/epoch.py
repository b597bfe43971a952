"""One MNIST epoch: the compiled lax.scan against the same steps driven from Python.

Scanned: the epoch `experiment.place` compiles (`compile_epoch`) for a 1-model experiment
built from configs/mnist.py (55 000 unlabelled / 2 000 = 28 steps, each 2 000 unlabelled +
179 labelled), state donated; one call = one epoch.
Python-driven: the same 28 steps, each one call of a jitted (gather_batch + vmapped
train_step) with the batch indices of the same epoch key, state donated, synchronised
once at the end of the epoch.
Both start from the same initial state and see the same batches (the epoch key is
fixed across repeats, so every timed epoch does the same work).

Figures (float32 and bfloat16 compute): epoch time both ways and their difference, the
FLOP/s fraction inside the scanned epoch (XLA FLOPs of the epoch / time / fp32 matmul
rate) and the projected 200-epoch training time (200 x the median scanned epoch;
training only, no evaluation).

XLA's cost analysis counts a while loop's body once (checked here: the compiled epoch's
FLOPs equal one step's), so the epoch's FLOPs are XLA's FLOPs of one compiled step x
steps per epoch; both numbers are in the JSON.

  python -m bench.epoch [--quick] [--repeats N]
"""

from __future__ import annotations

from bench import common

import jax

from exon_jax import batching
from exon_jax import experiment, train

EPOCHS = 200


def measure(compute_dtype: str, reps: int) -> dict:
    config = common.mnist_config(compute_dtype)
    exp = experiment.build_experiment(config, common.mnist_dataset())
    epoch_key = experiment.epoch_key(exp.spec.data.seed, 0, exp.mesh)
    s = exp.spec.settings
    steps = s.steps_per_epoch

    # --- scanned epoch, as main.py places and compiles it
    placed = experiment.place(exp)
    data, hparams, states0 = placed.data, placed.hparams, placed.states
    compiled_epoch = placed.epoch_fn
    epoch_flops_raw = common.xla_flops(compiled_epoch)

    # --- Python-driven steps: gather + vmapped step, one jitted call per step
    step = jax.vmap(exp.spec.train_step, in_axes=(0, 0, None))

    def gather_and_step(states, hparams, data, u_idx, l_idx):
        return step(states, hparams, train.gather_batch(data, u_idx, l_idx))

    step_fn = jax.jit(gather_and_step, donate_argnums=0)
    u_order, l_order = jax.jit(
        lambda k: batching.epoch_batch_indices(
            k, s.num_unlabelled, s.num_labelled, s.batch_unlabelled, s.batch_labelled
        )
    )(epoch_key)
    u_rows = [jax.device_put(u_order[i]) for i in range(steps)]
    l_rows = [jax.device_put(l_order[i]) for i in range(steps)]
    states_py0 = experiment.init_states(exp)
    compiled_step = step_fn.lower(states_py0, hparams, data, u_rows[0], l_rows[0]).compile()
    step_flops = common.xla_flops(compiled_step)

    holder = {"scan": states0, "py": states_py0}

    def scanned():
        holder["scan"], metrics = compiled_epoch(holder["scan"], hparams, data, epoch_key)
        return holder["scan"], metrics

    def python_loop(losses=None):
        states = holder["py"]
        for i in range(steps):
            states, metrics = compiled_step(states, hparams, data, u_rows[i], l_rows[i])
            if losses is not None:
                losses.append(metrics["loss"])
        holder["py"] = states
        return states, metrics

    # Warm-up: the first epoch of each from the same start; their mean losses should agree
    # (same batches, same keys), which checks that both run the same computation.
    first_scan = float(jax.device_get(scanned()[1]["loss"])[0])
    losses = []
    python_loop(losses)
    first_py = float(sum(float(jax.device_get(x)[0]) for x in losses) / len(losses))
    # Alternate the two so drifting machine load hits both alike.
    t_scan, t_py = [], []
    for _ in range(reps):
        t_scan.append(common.timeit(scanned, repeats=1, warmup=0)["all_s"][0])
        t_py.append(common.timeit(python_loop, repeats=1, warmup=0)["all_s"][0])
    scan_stats, py_stats = common.summarize(t_scan), common.summarize(t_py)

    epoch_flops = step_flops * steps if step_flops else None
    scan_median = scan_stats["median_s"]
    achieved = epoch_flops / scan_median if epoch_flops else None
    return {
        "compute_dtype": compute_dtype,
        "steps_per_epoch": steps,
        "examples_per_step": s.batch_unlabelled + s.batch_labelled,
        "scanned_epoch": scan_stats,
        "python_loop_epoch": py_stats,
        "python_minus_scanned_s": py_stats["median_s"] - scan_median,
        "python_over_scanned": py_stats["median_s"] / scan_median,
        "scanned_step_s": scan_median / steps,
        "python_step_s": py_stats["median_s"] / steps,
        "xla_flops_epoch_as_reported": epoch_flops_raw,
        "xla_flops_per_step": step_flops,
        "epoch_flops_reported_over_step_flops": (
            epoch_flops_raw / step_flops if epoch_flops_raw and step_flops else None
        ),
        "xla_flops_epoch_used": epoch_flops,
        "achieved_flops_per_s": achieved,
        "projected_200_epochs_s": EPOCHS * scan_median,
        "projected_200_epochs_min": EPOCHS * scan_median / 60,
        "first_epoch_mean_loss_scanned": first_scan,
        "first_epoch_mean_loss_python": first_py,
        "memory_scanned_epoch": common.memory(compiled_epoch),
    }


def main():
    args = common.parse_args(__doc__)
    reps = common.repeats(args, full=7, quick=3)
    before = common.matmul_rates(args.quick)
    results = {dt: measure(dt, reps) for dt in ("float32", "bfloat16")}
    rates = common.bracket_rates(before, args.quick)
    for r in results.values():
        r.update(common.fractions(r["achieved_flops_per_s"], rates))
        r["arithmetic_floor_200_epochs_min_at_fp32_matmul_rate"] = (
            EPOCHS * r["xla_flops_epoch_used"] / rates["float32"]["flops_per_s"] / 60
            if r["xla_flops_epoch_used"]
            else None
        )
    table = []
    for dt, r in results.items():
        table += [
            common.row(
                f"MNIST epoch, scanned ({dt})",
                common.sig(r["scanned_epoch"]["median_s"]),
                "s",
                f"min {common.sig(r['scanned_epoch']['min_s'])}, max "
                f"{common.sig(r['scanned_epoch']['max_s'])}, n={r['scanned_epoch']['n']}",
            ),
            common.row(
                f"MNIST epoch, Python loop ({dt})",
                common.sig(r["python_loop_epoch"]["median_s"]),
                "s",
                f"python - scanned = {common.sig(r['python_minus_scanned_s'] * 1e3)} ms",
            ),
            common.row(
                f"MNIST scanned epoch ({dt}) achieved / fp32 matmul rate",
                common.sig(r["fraction_of_fp32_matmul"], 3),
                "",
                f"{common.sig(r['achieved_flops_per_s'] / 1e9)} of "
                f"{common.sig(rates['float32']['flops_per_s'] / 1e9)} GFLOP/s; "
                f"{common.sig(r['fraction_of_bf16_matmul'], 3)} of bf16-input matmul; "
                f"target >= 0.85",
            ),
            common.row(
                f"MNIST 200 epochs projected ({dt}, training only)",
                common.sig(r["projected_200_epochs_min"], 3),
                "min",
                f"floor at fp32 matmul rate "
                f"{common.sig(r['arithmetic_floor_200_epochs_min_at_fp32_matmul_rate'], 3)} min",
            ),
        ]
    f32, bf16 = results["float32"], results["bfloat16"]
    summary = (
        f"epoch fp32 scanned {f32['scanned_epoch']['median_s']:.2f} s vs python "
        f"{f32['python_loop_epoch']['median_s']:.2f} s ({f32['fraction_of_fp32_matmul']:.2f} "
        f"of fp32 matmul, 200 epochs ~{f32['projected_200_epochs_min']:.1f} min); bf16 scanned "
        f"{bf16['scanned_epoch']['median_s']:.2f} s ({bf16['fraction_of_fp32_matmul']:.2f})"
    )
    targets = {
        "scanned_fp32_fraction_of_fp32_matmul": {
            "target": ">= 0.85",
            "measured": f32["fraction_of_fp32_matmul"],
            "met": f32["fraction_of_fp32_matmul"] >= 0.85,
            "shortfall": max(0.0, 0.85 - f32["fraction_of_fp32_matmul"]),
        },
        "scanned_no_slower_than_python_fp32": {
            "target": "scanned <= python",
            "python_minus_scanned_s": f32["python_minus_scanned_s"],
            "met": f32["python_minus_scanned_s"] >= 0.0,
        },
        "projected_200_epochs_fp32_training_only_min": {
            "target": "<= 5 min end to end (this is a training-only projection, not the "
            "measured end-to-end run)",
            "measured": f32["projected_200_epochs_min"],
            "met": f32["projected_200_epochs_min"] <= 5.0,
            "excess_min": max(0.0, f32["projected_200_epochs_min"] - 5.0),
        },
    }
    common.write_json(
        "epoch",
        {
            "targets": targets,
            "quick": args.quick,
            "repeats": reps,
            "warmup": "one epoch each way (compared for equal losses) before timing",
            "matmul": rates,
            "definition": "scanned = experiment.compile_epoch (1 model); python = 28 calls of "
            "jit(gather_batch + vmapped train_step), same batch indices; timed "
            "alternately, block_until_ready at the end of each epoch",
            "results": results,
            "table": table,
        },
        summary,
    )


if __name__ == "__main__":
    main()
