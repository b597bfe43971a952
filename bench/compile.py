"""Time to first step: trace/lower + XLA compile + first call, per program.

Programs: the MNIST scanned epoch (experiment.compile_epoch, 1 model, configs/mnist.py),
the single MNIST train step (jit, donated), and the CIFAR-10 train step (128 + 32,
configs/cifar10.py if present, else the overrides in bench/common.py; generated uint8
[50 000, 32, 32, 3] images; single model, jit, donated). Set-up (build_experiment,
arrays to device, init_states) is timed separately and not part of "first step".

Each figure is from a fresh process (a child of this script) so that no in-process
cache helps: --quick runs one child, the full run 3 children and reports
median/min/max. No persistent compilation cache is configured (see machine.env and
machine.compilation_cache_dir in the JSON).

  python -m bench.compile [--quick] [--repeats N]
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from bench import common

PROGRAMS = ("mnist_epoch", "mnist_step", "cifar_step")


def child(program: str) -> dict:
    """Measures one program in this (fresh) process."""
    import jax
    from exon_jax import experiment

    t0 = time.perf_counter()
    if program.startswith("mnist"):
        config = common.mnist_config()
        dataset = common.mnist_dataset()
        source = "configs/mnist.py"
    else:
        config, source = common.cifar_config()
        dataset = common.cifar_dataset()
    exp = experiment.build_experiment(config, dataset)
    data = experiment.device_data(exp)
    if program == "mnist_epoch":
        fn = experiment.compile_epoch(exp)
        args = (
            experiment.init_states(exp),
            experiment.sharded_hparams(exp),
            data,
            experiment.epoch_key(exp.spec.data.seed, 0, exp.mesh),
        )
    else:
        state, hparams = common.single_model(exp)
        fn = jax.jit(
            exp.spec.train_step,
            donate_argnums=0,
        )
        args = (state, hparams, common.first_batch(exp, data))
    jax.block_until_ready(args)
    setup_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    lowered = fn.lower(*args)
    lower_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(compiled(*args))
    first_call_s = time.perf_counter() - t0
    return {
        "program": program,
        "config": source,
        "setup_s": setup_s,
        "lower_s": lower_s,
        "compile_s": compile_s,
        "first_call_s": first_call_s,
        "time_to_first_step_s": lower_s + compile_s + first_call_s,
        "steps_in_first_call": exp.spec.settings.steps_per_epoch if program == "mnist_epoch" else 1,
    }


def main():
    def extra(parser):
        parser.add_argument("--child", choices=PROGRAMS, default=None, help=argparse_hidden)

    argparse_hidden = "internal: measure one program and print its JSON"
    args = common.parse_args(__doc__, extra)
    if args.child:
        print("RESULT " + json.dumps(child(args.child)), flush=True)
        return
    runs = common.repeats(args, full=3, quick=1)
    results = {}
    for program in PROGRAMS:
        samples = []
        for _ in range(runs):
            proc = subprocess.run(
                [sys.executable, "-m", "bench.compile", "--child", program],
                capture_output=True,
                text=True,
                cwd=common.REPO_ROOT,
            )
            lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                raise RuntimeError(
                    f"compile child {program} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
                )
            samples.append(json.loads(lines[-1][len("RESULT ") :]))
        stats = {
            k: common.summarize([s[k] for s in samples])
            for k in ("setup_s", "lower_s", "compile_s", "first_call_s", "time_to_first_step_s")
        }
        results[program] = {
            "config": samples[0]["config"],
            "steps_in_first_call": samples[0]["steps_in_first_call"],
            **stats,
            "samples": samples,
        }
    names = {
        "mnist_epoch": "MNIST scanned epoch (28 steps in the first call)",
        "mnist_step": "MNIST train step",
        "cifar_step": "CIFAR-10 train step (128+32)",
    }
    table = []
    for program, r in results.items():
        table.append(
            common.row(
                f"time to first step: {names[program]}",
                common.sig(r["time_to_first_step_s"]["median_s"], 3),
                "s",
                f"lower {common.sig(r['lower_s']['median_s'], 3)} + compile "
                f"{common.sig(r['compile_s']['median_s'], 3)} + first call "
                f"{common.sig(r['first_call_s']['median_s'], 3)} s; n={r['compile_s']['n']}",
            )
        )
    summary = "; ".join(
        f"{p} {r['time_to_first_step_s']['median_s']:.1f} s "
        f"(compile {r['compile_s']['median_s']:.1f} s)"
        for p, r in results.items()
    )
    common.write_json(
        "compile",
        {
            "quick": args.quick,
            "fresh_processes_per_program": runs,
            "definition": "time_to_first_step = lower (trace) + compile + first call, each "
            "synchronised; set-up (data to device, init) separate",
            "results": results,
            "table": table,
        },
        summary,
    )


if __name__ == "__main__":
    main()
