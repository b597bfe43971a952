"""Vmapped sweeps: per-model step time for G models in one compiled program.

For each G, a configs/mnist.py experiment with config.sweep.lambda1 set to G distinct
values (10, 20, ..., 10 G) is compiled once by `experiment.compile_epoch` (vmap over
the model axis of the scanned epoch); one epoch is timed and divided by steps and G.
The baseline is G single-model steps run one after another = G x the per-step time of
the G = 1 program measured in the same run (same code path, same batches), its epochs
timed just before and just after each G's, so that changing machine load hits both. The ratio
per-model step(G) / single-model step is the sweep's gain (< 1 is faster; the target
at G = 16 is <= 0.8, issue #15).

Memory from compiled.memory_analysis() (arguments + outputs + temporaries - aliased):
total, total / G, and the increment per added model ((total(G) - total(1)) / (G - 1)),
which excludes the data set shared by all models.

The step's dense products are also timed alone (each product jitted by itself, G = 1
unbatched and G = 16 vmapped, interleaved): their time per model at G = 16 over the single
model's whole step is a floor under the G = 16 ratio that no arrangement of the rest of the
step can go below.

--quick: G = 1, 4, 16 and 8-step epochs (data.max_unlabelled = 16 000) instead of the
full 28-step epoch; full: G = 1, 4, 16, 64, full epochs.

  python -m bench.sweep [--quick] [--repeats N] [--groups 1,4,16,64]
"""

from __future__ import annotations

import time

from bench import common

import jax
import jax.numpy as jnp

from exon_jax import experiment

# Issue #15: 16 models at <= 0.8x the single model's cost per model-step.
TARGET_G16 = 0.8


class Program:
    """The compiled G-model epoch of one sweep, with its own donated states."""

    def __init__(self, G: int, max_unlabelled: int):
        config = common.mnist_config()
        config.data.max_unlabelled = max_unlabelled
        if G > 1:
            config.sweep.lambda1 = tuple(float(10 * (i + 1)) for i in range(G))
        exp = experiment.build_experiment(config, common.mnist_dataset())
        assert exp.spec.num_models == G
        self.G, self.exp = G, exp
        self.lambda1 = [float(p.get("lambda1", config.loss.lambda1)) for p in exp.spec.points]
        self.data = experiment.device_data(exp)
        self.hparams = experiment.sharded_hparams(exp)
        self.key = experiment.epoch_key(exp.spec.data.seed, 0, exp.mesh)
        self.states = experiment.init_states(exp)
        epoch_fn = experiment.compile_epoch(exp)
        t0 = time.perf_counter()
        self.compiled = epoch_fn.lower(self.states, self.hparams, self.data, self.key).compile()
        self.compile_s = time.perf_counter() - t0
        self.steps = exp.spec.settings.steps_per_epoch
        self.times: list[float] = []

    def one_epoch(self):
        self.states, metrics = self.compiled(self.states, self.hparams, self.data, self.key)
        return self.states, metrics

    def time(self, reps: int, warmup: int = 0) -> list[float]:
        stats = common.timeit(self.one_epoch, repeats=reps, warmup=warmup)
        self.times += stats["all_s"]
        return stats["all_s"]


def dense_shapes(params) -> list[tuple[int, int]]:
    """(inputs, outputs) of every dense kernel in `params` (leaves [G, i, o])."""
    return [leaf.shape[-2:] for leaf in jax.tree.leaves(params) if leaf.ndim == 3]


def product_programs(shapes, batch: int, data_dim: int, G: int):
    """The step's dense products for G models, each jitted alone with its operands:
    forward x.W, input gradient g.W^T (not for the data layer) and weight gradient x^T.g.
    G = 1: the unbatched products of one model; G > 1: vmapped over per-model operands, the
    data layer's x shared by all models (a grid trains every model on the same batches)."""
    key = jax.random.key(0)
    programs = []
    for i, o in shapes:
        shared = i == data_dim
        lead = () if G == 1 else (G,)
        x = jax.random.normal(key, (batch, i) if shared else (*lead, batch, i))
        w = jax.random.normal(key, (*lead, i, o))
        g = jax.random.normal(key, (*lead, batch, o))

        def lift(fn, x_axis):
            return jax.jit(fn if G == 1 else jax.vmap(fn, in_axes=(x_axis, 0)))

        x_axis = None if shared else 0
        programs.append((f"{i}x{o} forward", 2 * batch * i * o, lift(jnp.matmul, x_axis), (x, w)))
        if not shared:
            programs.append(
                (
                    f"{i}x{o} input gradient",
                    2 * batch * i * o,
                    lift(lambda g, w: g @ w.T, 0),
                    (g, w),
                )
            )
        programs.append(
            (
                f"{i}x{o} weight gradient",
                2 * batch * i * o,
                lift(lambda x, g: x.T @ g, x_axis),
                (x, g),
            )
        )
    return programs


def time_products(exp, params, groups: list[int], repeats: int) -> dict[str, object]:
    """Seconds per model of the step's dense products alone, for each G, interleaved by G."""
    settings = exp.spec.settings
    batch = settings.batch_unlabelled + settings.batch_labelled
    data_dim = int(exp.data.dataset.train.images[0].size)
    shapes = dense_shapes(params)
    programs = {G: product_programs(shapes, batch, data_dim, G) for G in groups}
    times: dict[int, dict[str, list[float]]] = {G: {} for G in groups}
    for _ in range(repeats):
        for G in groups:
            for name, _, fn, operands in programs[G]:
                stats = common.timeit(lambda: fn(*operands), repeats=3, warmup=1)
                times[G].setdefault(name, []).append(stats["min_s"])
    out: dict[str, object] = {"batch": batch, "shapes": [list(s) for s in shapes]}
    for G in groups:
        medians = {name: common.summarize(t)["median_s"] for name, t in times[G].items()}
        flop = sum(f for _, f, _, _ in programs[G])
        per_model = sum(medians.values()) / G
        out[str(G)] = {
            "seconds_per_model": per_model,
            "flop_per_model": flop,
            "gflops_per_s": flop / per_model / 1e9,
            "seconds_per_model_by_product": {k: v / G for k, v in medians.items()},
        }
    return out


def main():
    def extra(parser):
        parser.add_argument(
            "--groups",
            default=None,
            help="comma-separated G values (default 1,4,16,64; quick 1,4,16)",
        )

    args = common.parse_args(__doc__, extra)
    groups = (
        [int(g) for g in args.groups.split(",")]
        if args.groups
        else ([1, 4, 16] if args.quick else [1, 4, 16, 64])
    )
    groups = sorted(set(groups) | {1})
    max_unlabelled = 16_000 if args.quick else 0
    single = Program(1, max_unlabelled)
    single.time(common.repeats(args, full=5, quick=3), warmup=1)
    mem1 = common.memory(single.compiled).get("total_bytes")
    results = []
    for G in groups:
        if G == 1:
            program, adjacent = single, list(single.times)
        else:
            reps = common.repeats(args, full=(5 if G <= 16 else 2), quick=(3 if G <= 4 else 2))
            common.log(
                f"sweep: G={G}, {reps} timed epochs, single-model epochs timed before and after"
            )
            program = Program(G, max_unlabelled)
            program.time(1, warmup=0)  # warm-up (first run)
            adjacent = single.time(2)  # baseline just before
            program.time(reps)
            adjacent += single.time(2)  # and just after
        # G = 1: its own timed epochs; G > 1: all but the first (warm-up) epoch.
        stats = common.summarize(single.times if G == 1 else program.times[1:])
        base = common.summarize(adjacent)
        steps = program.steps
        per_model = stats["median_s"] / steps / G
        single_step = base["median_s"] / steps
        mem = common.memory(program.compiled)
        loss = jax.device_get(program.one_epoch()[1]["loss"])
        results.append(
            {
                "G": G,
                "lambda1": program.lambda1,
                "steps_per_epoch": steps,
                "compile_s": program.compile_s,
                "epoch_time": stats,
                "per_model_step_s": per_model,
                "per_model_step_min_s": stats["min_s"] / steps / G,
                "per_model_step_max_s": stats["max_s"] / steps / G,
                "model_steps_per_s": steps * G / stats["median_s"],
                "single_model_epoch_time_adjacent": base,
                "single_model_step_s": single_step,
                "sequential_G_steps_s": G * single_step,
                "vmapped_G_steps_s": per_model * G,
                "per_model_over_single": per_model / single_step,
                "memory": mem,
                "memory_per_model_mib": mem.get("total_bytes", 0) / G / 2**20 if mem else None,
                "memory_increment_per_model_mib": (
                    (mem["total_bytes"] - mem1) / (G - 1) / 2**20
                    if mem and mem1 and G > 1
                    else None
                ),
                "last_epoch_loss_per_model": [float(v) for v in loss],
            }
        )
        if G > 1:
            del program
    product_groups = [G for G in (1, 16) if G in groups]
    common.log(f"sweep: the step's dense products alone, G = {product_groups}")
    products = time_products(
        single.exp, single.states.params, product_groups, common.repeats(args, full=5, quick=3)
    )
    single_ms = results[0]["per_model_step_s"]
    table = []
    for r in results:
        note = (
            f"{r['G']} x single = {common.sig(r['sequential_G_steps_s'] * 1e3)} ms sequential; "
            f"memory {common.sig(r['memory_per_model_mib'], 3)} MiB/model"
        )
        if r["G"] > 1:
            note += f" (+{common.sig(r['memory_increment_per_model_mib'], 3)} MiB per added model)"
        if r["G"] == 16:
            note += f"; target <= {TARGET_G16}"
        table.append(
            common.row(
                f"sweep G={r['G']}: per-model step (ratio to single)",
                f"{common.sig(r['per_model_step_s'] * 1e3)} ms ({common.sig(r['per_model_over_single'], 3)})",
                "",
                note,
            )
        )
    if "16" in products:
        p1, p16 = products["1"], products["16"]
        products["ratio_16_over_1"] = p16["seconds_per_model"] / p1["seconds_per_model"]
        products["floor_of_G16_ratio"] = p16["seconds_per_model"] / single_ms
        table.append(
            common.row(
                "sweep: dense products alone, per model, G=16 vs G=1",
                f"{common.sig(p16['seconds_per_model'] * 1e3)} vs "
                f"{common.sig(p1['seconds_per_model'] * 1e3)} ms",
                "",
                f"{common.sig(p16['gflops_per_s'], 3)} vs {common.sig(p1['gflops_per_s'], 3)} "
                f"GFLOP/s; G=16's products alone are "
                f"{common.sig(products['floor_of_G16_ratio'], 3)} x the single model's whole step",
            )
        )
    by_g = {r["G"]: r for r in results}
    key = 16 if 16 in by_g else max(by_g)
    summary = (
        f"per-model step G=1 {single_ms * 1e3:.1f} ms; "
        + ", ".join(
            f"G={r['G']} {r['per_model_step_s'] * 1e3:.1f} ms ({r['per_model_over_single']:.2f}x)"
            for r in results[1:]
        )
        + f"; G={key} memory {by_g[key]['memory_per_model_mib']:.0f} MiB/model"
    )
    targets = {}
    if 16 in by_g:
        ratio = by_g[16]["per_model_over_single"]
        targets["G16_per_model_over_single"] = {
            "target": f"<= {TARGET_G16}",
            "measured": ratio,
            "met": ratio <= TARGET_G16,
            "excess": max(0.0, ratio - TARGET_G16),
        }
    common.write_json(
        "sweep",
        {
            "targets": targets,
            "quick": args.quick,
            "steps_per_epoch": results[0]["steps_per_epoch"],
            "max_unlabelled": max_unlabelled,
            "definition": "per-model step = median epoch time / steps / G of the G-model vmapped "
            "scanned epoch; single = per-step time of the G=1 program, its epochs "
            "timed just before and just after each G's (2 + 2), so drifting machine "
            "load hits both alike; sequential G steps = G x single",
            "results": results,
            "products": products,
            "table": table,
        },
        summary,
    )


if __name__ == "__main__":
    main()
