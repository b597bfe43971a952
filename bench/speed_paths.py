"""exon_jax's MNIST training speed against TensorFlow/Keras + XLA, epoch by epoch in one run.

Each exon_jax variant is the paper MNIST experiment (configs/mnist.py, real MNIST, 2 000 +
179 a step, 28 steps an epoch) placed and compiled by `experiment.place` (its
`compile_epoch`), the path main.py trains with: the scanned epoch (`train.make_train_epoch`,
`epoch_loop="scan"`) or one jitted step per Python call (`epoch_loop="python"`). Variants
differ in compute dtype and in the dense layers' weight-gradient layout
(`models.WEIGHT_GRADIENT_LAYOUTS`; "xla" is XLA's stock gradient, the other the layout
exon_jax uses by default).

The reference is ../shared/refbench/tf_keras_step.py's own step (Keras 3, GradientTape,
tf.function(jit_compile=True)), run by bench/tf_driver.py in a long-lived process of the
TensorFlow venv, 28 steps per request. Every round times one epoch of every variant and
28 TF steps, in an order rotated from round to round, after one untimed warm-up epoch of
each (compilation excluded: steady state). Ratios are speed ratios exon_jax / TF (> 1:
exon_jax faster): `ratio_median` is the median over rounds of the ratio within a round,
`ratio_best` the ratio of the fastest epoch of each over all rounds (on a shared machine
other load only slows a run, so the best of each is the least disturbed).

The process keeps the glibc allocator as main.py does (`exon_jax.ops.host_allocator` via
`common.tune_allocator`: glibc's defaults unless EXON_MALLOC_TUNING=1; see `allocator` in the
JSON; bench/allocator.py compares the settings).

  TFREF=<venv> python -m bench.speed_paths [--quick] [--repeats ROUNDS] [--variants a,b]
  python -m bench.speed_paths --tf-python <venv>/bin/python [--refbench tf_keras_step.py]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

from bench import common, products

common.tune_allocator()

import jax  # noqa: E402

from exon_jax import backend, experiment  # noqa: E402

# name: (compute dtype, weight-gradient layout, epoch loop); None = backend.dense_weight_gradient()
VARIANTS = {
    "f32_scan": ("float32", None, "scan"),
    "f32_scan_stock": ("float32", "xla", "scan"),
    "bf16_scan": ("bfloat16", None, "scan"),
    "bf16_scan_stock": ("bfloat16", "xla", "scan"),
    "f32_per_call": ("float32", None, "python"),
}
TARGETS = {"f32_scan": 1.05, "bf16_scan": 1.5, "f32_per_call": 0.9}


class JaxVariant:
    def __init__(self, name: str, dtype: str, layout: str | None, loop: str):
        self.name, self.dtype, self.loop = name, dtype, loop
        self.layout = layout or backend.dense_weight_gradient()
        config = common.mnist_config(dtype)
        config.train.epoch_loop = loop
        config.train.dense_layout = self.layout
        exp = experiment.build_experiment(config, common.mnist_dataset())
        self.exp = exp
        self.steps = exp.spec.settings.steps_per_epoch
        placed = experiment.place(exp)  # main.py's path (a scanned epoch compiled ahead)
        self.data, self.hparams, self.states = placed.data, placed.hparams, placed.states
        self.key = experiment.epoch_key(exp.spec.data.seed, 0, exp.mesh)
        self.epoch = placed.epoch_fn
        self.run()  # warm-up (traces the python loop's step)

    def run(self) -> float:
        t0 = time.perf_counter()
        self.states, metrics = self.epoch(self.states, self.hparams, self.data, self.key)
        jax.block_until_ready((self.states, metrics))
        return time.perf_counter() - t0


def step_costs(exp, data, rounds: int) -> dict:
    """The float32 step of `exp` (one model, the first batch of epoch 0): XLA's FLOPs of the
    compiled step, and its products floor (`bench/products.py`: every dot of the step and
    of its gradient run as a bare matmul of its shape, median of `rounds` timings)."""
    state, hparams = common.single_model(exp)
    batch = common.first_batch(exp, data)
    compiled = jax.jit(exp.spec.train_step).lower(state, hparams, batch).compile()
    found = products.matmul_shapes(exp.spec.train_step, state, hparams, batch)
    floor = [products.floor_seconds(found, repeats=3) for _ in range(rounds)]
    return {
        "xla_flops_per_step": common.xla_flops(compiled),
        "products": len(found),
        "products_flop": sum(p.flop for p in found),
        "products_floor_s": common.summarize(floor),
        "shapes_batch_m_k_n_count": [
            list(k) + [v] for k, v in products.distinct_shapes(found).items()
        ],
    }


class TfVariant:
    def __init__(self, python: str, script: str, xla: bool, steps: int):
        self.steps = steps
        self.proc = subprocess.Popen(
            [python, os.path.join(common.BENCH_DIR, "tf_driver.py"), "--refbench", script]
            + (["--xla"] if xla else []),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.info = self._read()
        self.run()  # warm-up request

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"tf_driver.py ended (rc {self.proc.poll()})")
        return json.loads(line)

    def run(self) -> float:
        self.proc.stdin.write(f"{self.steps}\n")
        self.proc.stdin.flush()
        return self._read()["seconds"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def main():
    def extra(parser):
        common.add_tf_options(parser)
        parser.add_argument(
            "--variants",
            default=",".join(VARIANTS),
            help="comma-separated subset of " + ",".join(VARIANTS) + "; NAME@LAYOUT "
            "picks a weight-gradient layout (models.WEIGHT_GRADIENT_LAYOUTS)",
        )
        parser.add_argument(
            "--tf-plain", action="store_true", help="also time TF's plain tf.function step"
        )

    args = common.parse_args(__doc__, extra)
    rounds = max(3, common.repeats(args, full=6, quick=3))
    tf_python, script, reason = common.tf_reference(args)
    if reason:
        common.write_tf_skipped("speed_paths", "speed against TF Keras + XLA", reason)
        return
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    runners: dict[str, object] = {}
    for name in names:
        common.log(f"speed_paths: compiling {name}")
        base, _, layout = name.partition("@")  # e.g. f32_scan@transpose_x
        dtype, default_layout, loop = VARIANTS[base]
        runners[name] = JaxVariant(name, dtype, layout or default_layout, loop)
    steps = runners[names[0]].steps
    runners["tf_xla"] = TfVariant(tf_python, script, True, steps)
    if args.tf_plain:
        runners["tf_plain"] = TfVariant(tf_python, script, False, steps)
    order = list(runners)
    rates_before = common.matmul_rates(args.quick)
    seconds = {n: [] for n in order}
    loads = []
    for r in range(rounds):
        loads.append([round(x, 2) for x in os.getloadavg()])
        for name in order[r % len(order) :] + order[: r % len(order)]:
            seconds[name].append(runners[name].run())
        common.log(
            f"speed_paths round {r}: "
            + ", ".join(f"{n} {steps / s[-1]:.2f}" for n, s in seconds.items())
            + f" steps/s; load {loads[-1]}"
        )
    f32 = next((n for n in names if runners[n].dtype == "float32"), None)
    costs = None
    if f32 is not None:  # after the rounds: the floor's operands are made one shape at a time
        common.log("speed_paths: the float32 step's FLOPs and products floor")
        costs = step_costs(runners[f32].exp, runners[f32].data, rounds)
    rates = common.bracket_rates(rates_before, args.quick)
    bf16_over_f32 = rates["bfloat16"]["flops_per_s"] / rates["float32"]["flops_per_s"]
    tf_info = {n: runners[n].info for n in runners if n.startswith("tf_")}
    for n in tf_info:
        runners[n].close()

    speed = {n: [steps / s for s in v] for n, v in seconds.items()}
    per_round = {n: [a / b for a, b in zip(speed[n], speed["tf_xla"])] for n in names}
    results = {}
    for n in names:
        results[n] = {
            "dtype": runners[n].dtype,
            "layout": runners[n].layout,
            "epoch_loop": runners[n].loop,
            "steps_per_s_median": statistics.median(speed[n]),
            "steps_per_s_best": max(speed[n]),
            "ratio_to_tf_xla_per_round": per_round[n],
            "ratio_median": statistics.median(per_round[n]),
            "ratio_best": max(speed[n]) / max(speed["tf_xla"]),
        }
    fp32_rate = rates["float32"]["flops_per_s"]
    if costs is not None and costs["xla_flops_per_step"]:
        flops = costs["xla_flops_per_step"]
        floor_s = costs["products_floor_s"]["median_s"]
        costs["products_flops_per_s"] = costs["products_flop"] / floor_s
        # the step run at nothing but its products' speed: the most its FLOP rate can be
        costs["fraction_of_fp32_matmul_at_products_floor"] = flops / floor_s / fp32_rate
        for n in names:
            if results[n]["dtype"] == "float32":
                achieved = flops * results[n]["steps_per_s_median"]
                results[n]["achieved_flops_per_s"] = achieved
                results[n]["fraction_of_fp32_matmul"] = achieved / fp32_rate
    targets = {
        n: {
            "target": f">= {t}",
            "measured_median": results[n]["ratio_median"],
            "measured_best": results[n]["ratio_best"],
            "met": results[n]["ratio_median"] >= t,
        }
        for n, t in TARGETS.items()
        if n in results
    }
    if "fraction_of_fp32_matmul" in results.get("f32_scan", {}):
        targets["f32_scan_fraction_of_fp32_matmul"] = {
            "target": ">= 0.85",
            "measured_median": results["f32_scan"]["fraction_of_fp32_matmul"],
            "at_products_floor": costs["fraction_of_fp32_matmul_at_products_floor"],
            "met": results["f32_scan"]["fraction_of_fp32_matmul"] >= 0.85,
        }
    for a, b in (("f32_scan", "f32_scan_stock"), ("bf16_scan", "bf16_scan_stock")):
        if a in results and b in results:
            results[a]["over_stock_layout_per_round"] = [x / y for x, y in zip(speed[a], speed[b])]
            results[a]["over_stock_layout_median"] = statistics.median(
                results[a]["over_stock_layout_per_round"]
            )
    load_note = f"{rounds} rounds, load {min(l[0] for l in loads)}-{max(l[0] for l in loads)}"
    table = [
        common.row(
            "TF Keras + XLA (refbench step, tf_driver.py), MNIST step",
            common.sig(statistics.median(speed["tf_xla"])),
            "steps/s",
            f"best {common.sig(max(speed['tf_xla']))}; {tf_info['tf_xla']['version']}",
        )
    ]
    if "tf_plain" in speed:
        table.append(
            common.row(
                "TF Keras tf.function (refbench step), MNIST step",
                common.sig(statistics.median(speed["tf_plain"])),
                "steps/s",
                f"best {common.sig(max(speed['tf_plain']))}",
            )
        )
    table.append(
        common.row(
            "matmul 2048^3 bf16 inputs (float32 accumulation) / float32, this machine",
            common.sig(bf16_over_f32, 3),
            "x rate",
            f"{common.sig(rates['bfloat16']['flops_per_s'] / 1e9, 3)} vs "
            f"{common.sig(rates['float32']['flops_per_s'] / 1e9, 3)} GFLOP/s "
            "(higher of before/after the rounds); bfloat16 mode gains only what bf16 products "
            "gain; CPU flags: " + " ".join(common.machine()["cpu_flags"]),
        )
    )
    for n in names:
        res = results[n]
        what = {"scan": "scanned epoch", "python": "one step per call"}[res["epoch_loop"]]
        note = (
            f"{common.sig(res['steps_per_s_median'])} steps/s; best-of ratio "
            f"{common.sig(res['ratio_best'], 3)}; {load_note}"
        )
        if n in TARGETS:
            note += f"; target >= {TARGETS[n]}"
        if "over_stock_layout_median" in res:
            note += f"; x{common.sig(res['over_stock_layout_median'], 3)} over stock layout"
        if "fraction_of_fp32_matmul" in res:
            note += (
                f"; {common.sig(res['achieved_flops_per_s'] / 1e9, 3)} GFLOP/s = "
                f"{common.sig(res['fraction_of_fp32_matmul'], 2)} of the float32 matmul rate"
            )
        table.append(
            common.row(
                f"exon_jax {res['dtype']} {what}, weight grad '{res['layout']}' / TF+XLA "
                "(main.py path, steady state)",
                common.sig(res["ratio_median"], 3),
                "x speed",
                note,
            )
        )
    if costs is not None and "products_flops_per_s" in costs:
        table.append(
            common.row(
                "the float32 step's products alone, each a bare matmul of its shape "
                "(bench/products.py): the most the step's FLOP rate can reach",
                common.sig(costs["fraction_of_fp32_matmul_at_products_floor"], 2),
                "of matmul rate",
                f"{costs['products']} products, "
                f"{common.sig(costs['products_floor_s']['median_s'] * 1e3, 3)} ms a step at "
                f"{common.sig(costs['products_flops_per_s'] / 1e9, 3)} GFLOP/s; step "
                f"{common.sig(costs['xla_flops_per_step'] / 1e9, 3)} GFLOP (XLA)",
            )
        )
    summary = (
        ", ".join(f"{n} {results[n]['ratio_median']:.2f}x" for n in names)
        + f" TF+XLA ({statistics.median(speed['tf_xla']):.1f} steps/s); {load_note}"
    )
    common.write_json(
        "speed_paths",
        {
            "quick": args.quick,
            "rounds": rounds,
            "steps_per_epoch": steps,
            "definition": "speed = steps / wall seconds of one epoch (exon_jax: one call of the "
            "compiled epoch of experiment.compile_epoch; TF: the same number of "
            "refbench steps, synchronised); ratio = exon_jax / TF+XLA speed; all "
            "variants interleaved epoch by epoch, order rotated per round, one "
            "untimed warm-up epoch each",
            "allocator": common.ALLOCATOR,
            "matmul_rates": rates,
            "float32_step": costs,
            "bf16_over_f32_matmul_rate": bf16_over_f32,
            "tf": {"python": tf_python, "script": script, **tf_info},
            "loadavg_per_round": loads,
            "seconds_per_epoch": seconds,
            "steps_per_s": speed,
            "results": results,
            "targets": targets,
            "table": table,
        },
        summary,
    )


if __name__ == "__main__":
    sys.exit(main())
