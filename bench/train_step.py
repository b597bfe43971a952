"""The paper's MNIST training step, one model, one jitted step per call.

2 000 unlabelled + 179 labelled real MNIST images (the first batch of epoch 0, gathered
on the device once; the same batch for every call and every variant), the paper
config (configs/mnist.py), train state donated. Figures, for float32 and bfloat16
compute (bf16 matmul operands, float32 accumulation, float32 parameters/optimiser):
median step time, examples/s, XLA's FLOPs of the compiled step, achieved FLOP/s and
its fraction of this machine's 2048^3 matmul rate measured in the same run.

  python -m bench.train_step [--quick] [--repeats N]
"""

from __future__ import annotations

from bench import common

import jax

from exon_jax import experiment


def measure(compute_dtype: str, reps: int, warmup: int) -> dict:
    config = common.mnist_config(compute_dtype)
    exp = experiment.build_experiment(config, common.mnist_dataset())
    data = experiment.device_data(exp)
    state, hparams = common.single_model(exp)
    batch = common.first_batch(exp, data)
    step = jax.jit(
        exp.spec.train_step,
        donate_argnums=0,
    )
    compiled = step.lower(state, hparams, batch).compile()
    flops = common.xla_flops(compiled)
    analytic = common.dense_matmul_flops(state.params, batch[0].shape[0], int(batch[0][0].size))
    holder = {"state": state}

    def one_step():
        holder["state"], metrics = compiled(holder["state"], hparams, batch)
        return holder["state"], metrics

    stats = common.timeit(one_step, repeats=reps, warmup=warmup)
    examples = int(batch[0].shape[0])
    median = stats["median_s"]
    achieved = flops / median if flops else None
    return {
        "compute_dtype": compute_dtype,
        "examples_per_step": examples,
        "batch": "first batch of epoch 0 (2000 unlabelled + 179 labelled real MNIST), fixed",
        "step_time": stats,
        "steps_per_s": 1.0 / median,
        "examples_per_s": examples / median,
        "xla_flops_per_step": flops,
        "analytic_dense_flops_per_step": analytic,
        "xla_over_analytic": flops / analytic if flops else None,
        "achieved_flops_per_s": achieved,
        "memory": common.memory(compiled),
        "final_loss": float(jax.device_get(one_step()[1]["loss"])),
    }


def main():
    args = common.parse_args(__doc__)
    reps = common.repeats(args, full=60, quick=15)
    warmup = 5 if args.quick else 10
    before = common.matmul_rates(args.quick)
    results = {dt: measure(dt, reps, warmup) for dt in ("float32", "bfloat16")}
    rates = common.bracket_rates(before, args.quick)
    for r in results.values():
        r.update(common.fractions(r["achieved_flops_per_s"], rates))
    f32, bf16 = results["float32"], results["bfloat16"]
    table = []
    for dt, r in results.items():
        table += [
            common.row(
                f"MNIST step ({dt}), median",
                common.sig(r["step_time"]["median_s"] * 1e3),
                "ms",
                f"min {common.sig(r['step_time']['min_s'] * 1e3)}, "
                f"max {common.sig(r['step_time']['max_s'] * 1e3)}, n={r['step_time']['n']}",
            ),
            common.row(f"MNIST step ({dt}), examples/s", common.sig(r["examples_per_s"]), "ex/s"),
            common.row(
                f"MNIST step ({dt}), achieved / fp32 matmul rate",
                common.sig(r["fraction_of_fp32_matmul"], 3),
                "",
                f"{common.sig(r['achieved_flops_per_s'] / 1e9)} GFLOP/s; "
                f"{common.sig(r['fraction_of_bf16_matmul'], 3)} of bf16-input matmul",
            ),
        ]
    table.insert(
        0,
        common.row(
            "MNIST step, XLA FLOPs",
            common.sig(f32["xla_flops_per_step"] / 1e9),
            "GFLOP",
            f"analytic dense {common.sig(f32['analytic_dense_flops_per_step'] / 1e9)}",
        ),
    )
    table.insert(
        0,
        common.row(
            "matmul 2048^3 fp32 / bf16-in (higher of before/after)",
            f"{common.sig(rates['float32']['flops_per_s'] / 1e9)} / "
            f"{common.sig(rates['bfloat16']['flops_per_s'] / 1e9)}",
            "GFLOP/s",
        ),
    )
    summary = (
        f"fp32 step {f32['step_time']['median_s'] * 1e3:.1f} ms "
        f"({f32['fraction_of_fp32_matmul']:.2f} of fp32 matmul), bf16 step "
        f"{bf16['step_time']['median_s'] * 1e3:.1f} ms "
        f"({bf16['fraction_of_fp32_matmul']:.2f} of fp32 matmul); "
        f"{f32['xla_flops_per_step'] / 1e9:.2f} GFLOP/step; matmul fp32 "
        f"{rates['float32']['flops_per_s'] / 1e9:.0f} GFLOP/s"
    )
    common.write_json(
        "train_step",
        {
            "quick": args.quick,
            "repeats": reps,
            "warmup": warmup,
            "matmul": rates,
            "definition": "one jitted step per call, state donated; each call timed with "
            "block_until_ready; fractions = XLA flops / median time / matmul rate",
            "results": results,
            "bf16_speedup": f32["step_time"]["median_s"] / bf16["step_time"]["median_s"],
            "table": table,
        },
        summary,
    )


if __name__ == "__main__":
    main()
