"""The CIFAR-10 training step (128 unlabelled + 32 labelled), one model, and projections.

Config: configs/cifar10.py if present, else the overrides of configs/mnist.py in
bench/common.py (conv network of paper Tables 1-2, d = 300, blocks prior, weighted
Gaussian likelihood, Adam 5e-3). Data: generated uint8 [50 000, 32, 32, 3] images with
balanced labels (content does not change a step's speed), 1 000 labelled per class ->
40 000 unlabelled -> 313 steps per epoch. One jitted step per call, state donated, the
same gathered batch every call.

Figures: median step time, the step's useful FLOPs (XLA's count of the same step on
the same networks with stock convolutions only (`transposed_conv="xla"`); exon_jax's own
compiled count is recorded too and may include zeros: of explicit patches and of the
sub-pixel transposed convolutions' phase kernels),
achieved FLOP/s as a fraction of this machine's 2048^3 float32 (and bf16-input) matmul
rate measured in the same run; the 200-epoch projection on this CPU (200 x 313 x median step); and, from the
FLOP count alone, on one modern GPU at an assumed sustained rate (stated in the JSON,
with the arithmetic). --quick: float32 only and fewer repeats; full: float32 and bfloat16.

  python -m bench.cifar_step [--quick] [--repeats N]
"""

from __future__ import annotations

import time

from bench import common

import jax

from exon_jax import experiment, train

EPOCHS = 200
# Assumed sustained GPU rates for the FLOP-only projection (NVIDIA H100 SXM datasheet
# dense peaks: bf16 989 TFLOP/s, TF32 495, float32 non-tensor 67).
GPU_ASSUMPTIONS = {
    "gpu": "NVIDIA H100 SXM (one)",
    "bf16_peak_tflops": 989.0,
    "bf16_utilisation": 0.40,
    "float32_sustained_tflops": 50.0,
    "float32_note": "~75% of the 67 TFLOP/s non-tensor-core float32 peak (or ~10% of TF32 "
    "tensor-core peak); an assumption, not a measurement",
}


def stock_step_flops(exp, batch) -> float | None:
    """XLA's FLOPs (lowered only, never run) of the train step with stock convolutions
    (`ConvDecoder(transposed_conv="xla")`): XLA counts a plain convolution's taps on real input
    only, not the zeros that patch matmuls or phase kernels multiply, so this is the step's
    useful arithmetic."""

    model = exp.spec.model.clone(decoder=exp.spec.model.decoder.clone(transposed_conv="xla"))
    hparams = train.unstack_tree(exp.spec.hparams, 0)
    create = lambda key: train.create_train_state(
        key, model, exp.spec.optimizer, hparams, exp.spec.settings, exp.spec.image_shape
    )
    state = jax.eval_shape(create, jax.random.key(0))
    lowered = jax.jit(train.make_train_step(model, exp.spec.optimizer, exp.spec.settings)).lower(
        state, hparams, batch
    )
    analysis = lowered.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else None
    return float(analysis["flops"]) if analysis and "flops" in analysis else None


def measure(compute_dtype: str, reps: int, warmup: int, budget_s: float) -> dict:
    config, source = common.cifar_config(compute_dtype)
    exp = experiment.build_experiment(config, common.cifar_dataset())
    data = experiment.device_data(exp)
    state, hparams = common.single_model(exp)
    batch = common.first_batch(exp, data)
    step = jax.jit(
        exp.spec.train_step,
        donate_argnums=0,
    )
    t0 = time.perf_counter()
    compiled = step.lower(state, hparams, batch).compile()
    compile_s = time.perf_counter() - t0
    xla_flops = common.xla_flops(compiled)
    # The FLOP figure used below is the step's useful arithmetic (XLA's count of the same
    # step on plain-convolution reference networks); exon_jax's own compiled count can be
    # larger where its convolutions are explicit-patch matmuls (XLA counts their zeros).
    useful = stock_step_flops(exp, batch)
    flops = useful if useful else xla_flops
    holder = {"state": state}

    def one_step():
        holder["state"], metrics = compiled(holder["state"], hparams, batch)
        return holder["state"], metrics

    # The first call is the first warm-up. Where a step is slow, the repeats are cut to
    # fit `budget_s` of timed steps (at least 2) and the first call is the only warm-up.
    first = common.timeit(one_step, repeats=1, warmup=0)["all_s"][0]
    planned = reps
    if first * (reps + warmup) > budget_s:
        reps = max(2, int(budget_s // first))
        warmup = 0 if first > 2.0 else warmup
    stats = common.timeit(one_step, repeats=reps, warmup=warmup)
    median = stats["median_s"]
    steps_per_epoch = exp.spec.settings.steps_per_epoch
    achieved = flops / median if flops else None
    run_flops = flops * steps_per_epoch * EPOCHS if flops else None
    return {
        "compute_dtype": compute_dtype,
        "config": source,
        "examples_per_step": int(batch[0].shape[0]),
        "num_unlabelled": exp.spec.settings.num_unlabelled,
        "steps_per_epoch": steps_per_epoch,
        "compile_s": compile_s,
        "first_call_s": first,
        "repeats_planned": planned,
        "repeats": reps,
        "extra_warmup_calls": warmup,
        "timed_budget_s": budget_s,
        "step_time": stats,
        "steps_per_s": 1.0 / median,
        "examples_per_s": batch[0].shape[0] / median,
        "useful_flops_per_step": useful,
        "xla_flops_per_step": xla_flops,
        "xla_over_useful": xla_flops / useful if xla_flops and useful else None,
        "flops_used": "useful_flops_per_step" if useful else "xla_flops_per_step",
        "achieved_flops_per_s": achieved,
        "xla_count_flops_per_s": xla_flops / median if xla_flops else None,
        "projected_200_epochs_cpu_s": EPOCHS * steps_per_epoch * median,
        "projected_200_epochs_cpu_h": EPOCHS * steps_per_epoch * median / 3600,
        "projection_arithmetic_cpu": f"{EPOCHS} epochs x {steps_per_epoch} steps x {median:.4g} s",
        "flops_200_epochs": run_flops,
        "memory": common.memory(compiled),
        "final_loss": float(jax.device_get(one_step()[1]["loss"])),
    }


def gpu_projection(flops_per_step: float, steps_per_epoch: int) -> dict:
    a = GPU_ASSUMPTIONS
    bf16_rate = a["bf16_peak_tflops"] * a["bf16_utilisation"] * 1e12
    f32_rate = a["float32_sustained_tflops"] * 1e12
    total = flops_per_step * steps_per_epoch * EPOCHS
    return {
        **a,
        "bf16_sustained_tflops": bf16_rate / 1e12,
        "flops_200_epochs": total,
        "bf16_seconds": total / bf16_rate,
        "float32_seconds": total / f32_rate,
        "bf16_step_ms": flops_per_step / bf16_rate * 1e3,
        "float32_step_ms": flops_per_step / f32_rate * 1e3,
        "arithmetic": (
            f"{flops_per_step:.4g} FLOP/step x {steps_per_epoch} steps x {EPOCHS} epochs "
            f"= {total:.4g} FLOP; / ({a['bf16_peak_tflops']} TFLOP/s x "
            f"{a['bf16_utilisation']}) = {total / bf16_rate:.1f} s bf16; / "
            f"{a['float32_sustained_tflops']} TFLOP/s = {total / f32_rate:.1f} s float32"
        ),
        "caveat": "FLOP-bound floor only: a 160-image step is small for an H100, so kernel "
        "launch latency, BatchNorm and memory-bound elementwise work likely dominate; "
        "expect the real time to be several times this",
    }


def main():
    args = common.parse_args(__doc__)
    reps = common.repeats(args, full=20, quick=5)
    warmup = 2 if args.quick else 3
    before = common.matmul_rates(args.quick)
    dtypes = ("float32",) if args.quick else ("float32", "bfloat16")
    budget = 60.0 if args.quick else 300.0
    results = {dt: measure(dt, reps, warmup, budget) for dt in dtypes}
    rates = common.bracket_rates(before, args.quick)
    for r in results.values():
        r.update(common.fractions(r["achieved_flops_per_s"], rates))
        r["fraction_of_fp32_matmul_by_xla_count"] = common.fractions(
            r["xla_count_flops_per_s"], rates
        )["fraction_of_fp32_matmul"]
    f32 = results["float32"]
    flops_key = f32["flops_used"]
    gpu = gpu_projection(f32[flops_key], f32["steps_per_epoch"])
    table = [
        common.row(
            "CIFAR-10 step, useful FLOPs (plain-conv reference, XLA count)",
            common.sig(f32[flops_key] / 1e9),
            "GFLOP",
            f"{f32['examples_per_step']} examples/step; exon_jax's compiled step "
            f"counts {common.sig(f32['xla_flops_per_step'] / 1e9)}",
        )
    ]
    for dt, r in results.items():
        table += [
            common.row(
                f"CIFAR-10 step ({dt}), median",
                common.sig(r["step_time"]["median_s"] * 1e3),
                "ms",
                f"min {common.sig(r['step_time']['min_s'] * 1e3)}, max "
                f"{common.sig(r['step_time']['max_s'] * 1e3)}, n={r['step_time']['n']}",
            ),
            common.row(
                f"CIFAR-10 step ({dt}), achieved / fp32 matmul rate",
                common.sig(r["fraction_of_fp32_matmul"], 3),
                "",
                f"{common.sig(r['achieved_flops_per_s'] / 1e9)} useful of "
                f"{common.sig(rates['float32']['flops_per_s'] / 1e9)} GFLOP/s; by exon_jax's "
                f"own XLA count {common.sig(r['fraction_of_fp32_matmul_by_xla_count'], 3)}",
            ),
            common.row(
                f"CIFAR-10 200 epochs on this CPU ({dt}, projected)",
                common.sig(r["projected_200_epochs_cpu_h"], 3),
                "h",
                r["projection_arithmetic_cpu"],
            ),
        ]
    table.append(
        common.row(
            "CIFAR-10 200 epochs on one H100 (FLOP-only floor)",
            f"{common.sig(gpu['bf16_seconds'], 3)} (bf16) / "
            f"{common.sig(gpu['float32_seconds'], 3)} (fp32)",
            "s",
            f"assumed {common.sig(gpu['bf16_sustained_tflops'], 3)} / "
            f"{gpu['float32_sustained_tflops']} TFLOP/s sustained",
        )
    )
    summary = (
        f"CIFAR step fp32 {f32['step_time']['median_s'] * 1e3:.0f} ms, "
        f"{f32[flops_key] / 1e9:.1f} useful GFLOP ({f32['fraction_of_fp32_matmul']:.2f} "
        f"of fp32 matmul); 200 epochs: {f32['projected_200_epochs_cpu_h']:.1f} h here, "
        f"~{gpu['bf16_seconds']:.0f} s bf16 / {gpu['float32_seconds']:.0f} s fp32 on one H100 "
        f"(FLOP floor)"
    )
    common.write_json(
        "cifar_step",
        {
            "quick": args.quick,
            "repeats": reps,
            "warmup": warmup,
            "matmul": rates,
            "definition": "one jitted step per call, state donated, fixed gathered batch; "
            "fractions = useful flops (XLA count of the plain-conv reference step) / median "
            "time / matmul rate; fraction_of_fp32_matmul_by_xla_count uses exon_jax's own "
            "compiled count",
            "results": results,
            "gpu_projection": gpu,
            "table": table,
        },
        summary,
    )


if __name__ == "__main__":
    main()
