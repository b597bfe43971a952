"""glibc malloc settings against XLA:CPU (`exon_jax.ops.host_allocator`): compile time and
the revision's one-step-per-call epoch under each setting, in fresh processes.

Variants (mallopt applied first thing in each child process, before JAX starts):
  glibc      glibc's defaults (what main.py keeps unless EXON_MALLOC_TUNING=1);
  one_arena  no mmap'd chunks, no trimming, a single arena (`host_allocator.tune()` with
             EXON_MALLOC_TUNING=1; main.py's default before this release);
  per_core   no mmap'd chunks, no trimming, an arena per usable core;
  no_arena_limit  no mmap'd chunks, no trimming, glibc's arena limit.

Per child: `mnist_epoch_compile_s`, XLA compiling the paper MNIST model's scanned epoch
(configs/mnist.py, no compilation cache); `revision_first_s`, the first 5 steps of the
MNIST-100 revision's stepwise epoch (configs/mnist100_revision.py; its step programs
compile in these); then `steps` more steps timed: `ms_per_step`, and per step the process's
minor page faults, system and user CPU milliseconds (getrusage). Variants alternate within
each round, so a drift of the machine's speed reaches all of them alike.

  python -m bench.allocator [--quick] [--repeats N]   (rounds; --quick: 2 rounds, 20 steps)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

from exon_jax.ops.host_allocator import M_ARENA_MAX, M_MMAP_MAX, M_TRIM_THRESHOLD

VARIANTS = ("glibc", "one_arena", "per_core", "no_arena_limit")


def _set_malloc(variant: str) -> None:
    import ctypes

    if variant == "glibc":
        return
    options = [(M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1)]
    if variant == "one_arena":
        options.append((M_ARENA_MAX, 1))
    elif variant == "per_core":
        options.append((M_ARENA_MAX, len(os.sched_getaffinity(0))))
    mallopt = ctypes.CDLL("libc.so.6").mallopt
    for option, value in options:
        assert mallopt(option, value) == 1


def child(variant: str, steps: int) -> dict:
    """One variant's figures, measured in this (fresh) process."""
    import resource
    import time

    _set_malloc(variant)
    from exon_jax.ops import xla_flags

    xla_flags.apply()
    import jax

    from configs import mnist, mnist100_revision
    from exon_jax import configuration, experiment

    def build(config):
        config.data.source, config.data.dir = "files", os.path.join(_root(), "data")
        configuration.validate_config(config)
        exp = experiment.build_validated(config)
        data, hparams = experiment.device_data(exp), experiment.sharded_hparams(exp)
        return exp, data, hparams, experiment.init_states(exp)

    exp, data, hparams, states = build(mnist.get_config())
    key = experiment.epoch_key(exp.spec.data.seed, 0, exp.mesh)
    lowered = experiment.compile_epoch(exp).lower(states, hparams, data, key)
    start = time.perf_counter()
    lowered.compile()
    compile_s = time.perf_counter() - start

    exp, data, hparams, states = build(mnist100_revision.get_config())
    epoch = experiment.compile_epoch(exp)  # stepwise: its programs compile on the first call
    key = experiment.epoch_key(exp.spec.data.seed, 0, exp.mesh)

    def run(count: int):
        nonlocal states
        done = [0]

        def stop():
            done[0] += 1
            return done[0] >= count

        states, _ = epoch(states, hparams, data, key, stop=stop)
        jax.block_until_ready(states)

    start = time.perf_counter()
    run(5)
    first_s = time.perf_counter() - start
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    run(steps)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "variant": variant,
        "mnist_epoch_compile_s": compile_s,
        "revision_first_s": first_s,
        "steps": steps,
        "ms_per_step": 1e3 * wall / steps,
        "minor_faults_per_step": (after.ru_minflt - before.ru_minflt) / steps,
        "system_ms_per_step": 1e3 * (after.ru_stime - before.ru_stime) / steps,
        "user_ms_per_step": 1e3 * (after.ru_utime - before.ru_utime) / steps,
    }


def _root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_child(variant: str, steps: int) -> dict:
    env = dict(os.environ, PYTHONPATH=_root())
    env["EXON_MALLOC_TUNING"] = "0"  # the child sets its own
    proc = subprocess.run(
        [sys.executable, "-m", "bench.allocator", "--child", variant, "--steps", str(steps)],
        capture_output=True,
        text=True,
        cwd=_root(),
        env=env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{variant} failed (rc {proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    if "--child" in sys.argv:
        variant = sys.argv[sys.argv.index("--child") + 1]
        steps = int(sys.argv[sys.argv.index("--steps") + 1])
        print(json.dumps(child(variant, steps)))
        return
    from bench import common

    args = common.parse_args("glibc malloc settings against XLA:CPU (host_allocator)")
    rounds = common.repeats(args, full=3, quick=2)
    steps = 20 if args.quick else 60
    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for r in range(rounds):
        for variant in VARIANTS:
            common.log(f"[allocator] round {r + 1}/{rounds}: {variant}")
            runs[variant].append(_run_child(variant, steps))

    fields = (
        "mnist_epoch_compile_s",
        "revision_first_s",
        "ms_per_step",
        "minor_faults_per_step",
        "system_ms_per_step",
        "user_ms_per_step",
    )
    medians = {v: {f: statistics.median(r[f] for r in runs[v]) for f in fields} for v in VARIANTS}
    table = [
        common.row(
            f"{variant}: MNIST epoch compile / revision first 5 steps / a step",
            f"{m['mnist_epoch_compile_s']:.2f} s / {m['revision_first_s']:.1f} s / "
            f"{m['ms_per_step']:.0f} ms",
            "",
            f"{m['minor_faults_per_step']:.0f} page faults, {m['system_ms_per_step']:.1f} ms "
            f"system a step (median of {rounds})",
        )
        for variant, m in medians.items()
    ]
    base = medians["glibc"]
    summary = "against glibc's defaults, a revision step / the MNIST epoch's compile: " + ", ".join(
        f"{v} {medians[v]['ms_per_step'] / base['ms_per_step']:.2f}x / "
        f"{medians[v]['mnist_epoch_compile_s'] / base['mnist_epoch_compile_s']:.2f}x"
        for v in VARIANTS[1:]
    )
    common.write_json(
        "allocator",
        {"rounds": rounds, "runs": runs, "medians": medians, "table": table, "quick": args.quick},
        summary,
    )


if __name__ == "__main__":
    main()
