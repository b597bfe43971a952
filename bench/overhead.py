"""The everyday loop around training (issue 24): where a `main.py` run's seconds go.

Runs `main.py` as subprocesses (process start to exit) and reads each run's timings.json
(`exon_jax.ops.timing`):
  tiny_cold / tiny_warm  configs/mnist.py:tiny, figures on, with a fresh compilation-cache
                         folder, then again with the same (now warm) folder;
  own_prior              configs/mnist_custom_prior.py, 3 epochs (fresh cache);
  grid_2x2               configs/mnist_sweep.py reduced to lambda1 (10, 100) x lambda2
                         (0.5, 1.1), 3 epochs, checkpoint and evaluation at the end only
                         (fresh cache);
  own_prior_warm / grid_2x2_warm  the same two again in new workdirs with their (now warm)
                         caches: the second run of a config, the everyday case;
and, in a fresh subprocess against the own-prior run's workdir, `api.load_run` to the
first `encode` of one image, twice with the same cache folder (cold, then warm; the
warm one is the target's figure), with whether Matplotlib was imported.

Breakdown per run: startup (process start to main.py's stopwatch), setup, compile, train,
evaluate, logging, checkpoints, figures, other, total (timings.json), and the wall
seconds this script measured around the subprocess. Ratios named by the issue's
targets: tiny total cold / warm; non-training / training of own_prior and grid_2x2;
evaluation / training, and the paper run's projected evaluation share (20 evaluations
over 200 epochs: 20 x evaluate / (200 x train per epoch), from own_prior); figures
seconds per model.

  python -m bench.overhead [--quick] [--label before|after]

--quick skips the warm repeats of load_run's cold run (it still runs every case once:
the cases are the benchmark). The JSON is bench/results/<machine>/overhead.json; with
--label it is merged into that file under the label, so that "before" and "after" of
one machine sit side by side.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from bench import common

PHASES = ("startup", "setup", "compile", "train", "evaluate", "logging", "checkpoints", "figures")
DATA = ["--config.data.source=files", f"--config.data.dir={os.path.join(common.REPO_ROOT, 'data')}"]
GRID = [
    "--config.sweep.lambda1=(10.0, 100.0)",
    "--config.sweep.lambda2=(0.5, 1.1)",
    "--config.train.epochs=3",
    "--config.train.checkpoint_every=3",
    "--config.train.eval_every=3",
]


def run_main(name: str, config: str, overrides: list[str], workdir: str, cache: str) -> dict:
    """One `main.py --mode=train` subprocess; its timings.json plus the wall seconds."""
    cmd = [
        sys.executable,
        os.path.join(common.REPO_ROOT, "main.py"),
        f"--config={config}",
        f"--workdir={workdir}",
        f"--compilation_cache={cache}",
        *DATA,
        *overrides,
    ]
    env = dict(os.environ, PYTHONPATH=common.REPO_ROOT)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    common.log(f"[overhead] {name}: {' '.join(cmd[1:])}")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=common.REPO_ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    with open(os.path.join(workdir, "timings.json")) as f:
        timings = json.load(f)
    with open(os.path.join(workdir, "results.json")) as f:
        num_models = json.load(f)["num_models"]
    return breakdown(name, config, overrides, timings, wall, num_models, proc.stderr)


def breakdown(name, config, overrides, timings, wall, num_models, stderr) -> dict:
    """The phases in PHASES order (0 where absent), totals and per-run ratios."""
    phases = {p: round(float(timings["phases"].get(p, 0.0)), 3) for p in PHASES}
    total = float(timings.get("total") or sum(phases.values()))
    train = phases["train"]
    figures = phases["figures"]
    return {
        "name": name,
        "config": config,
        "overrides": overrides,
        "num_models": num_models,
        "phases": phases,
        "other_s": round(total - sum(phases.values()), 3),
        "total_s": round(total, 3),
        "wall_s": round(wall, 3),
        "non_training_s": round(total - train, 3),
        "non_training_over_training": round((total - train) / train, 3) if train else None,
        "evaluate_over_training": round(phases["evaluate"] / train, 4) if train else None,
        "figures_s_per_model": round(figures / num_models, 3) if figures else None,
        "stderr_tail": stderr[-1500:],
    }


LOAD_RUN = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from exon_jax import api
from exon_jax.ops import timing
t_import = time.perf_counter()
run = api.load_run(sys.argv[1])
t_load = time.perf_counter()
images = np.zeros((1, 28, 28, 1), np.uint8)
run.encode(images)
t_encode = time.perf_counter()
print(json.dumps({
    "process_age_at_encode_s": timing.process_age_seconds(),
    "import_s": t_import - t0,
    "load_run_s": t_load - t_import,
    "first_encode_s": t_encode - t_load,
    "import_to_first_encode_s": t_encode - t0,
    "matplotlib_imported": "matplotlib" in sys.modules,
}))
"""


def load_run_to_encode(workdir: str, cache: str) -> dict:
    """A fresh process: import exon_jax.api, load_run(workdir), encode one image."""
    env = dict(
        os.environ,
        PYTHONPATH=common.REPO_ROOT,
        JAX_COMPILATION_CACHE_DIR=cache,
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_RUN, workdir], capture_output=True, text=True, env=env
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"load_run failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall_s"] = round(wall, 3)
    return out


def with_figure_format(exp, pdf: bool):
    """`exp` (a frozen `experiment.Experiment`) whose figures are written as PNG and PDF
    (pdf=True) or as PNG only: its RunSpec's analysis settings replaced, nothing else."""
    analysis = dataclasses.replace(exp.spec.analysis, pdf=pdf)
    return dataclasses.replace(exp, spec=dataclasses.replace(exp.spec, analysis=analysis))


FIGURES = r"""
import json, sys, tempfile, time
from bench.overhead import with_figure_format
from exon_jax import experiment, figures, plots, saved_run
from exon_jax.ops import figure_workers
exp, states, _ = saved_run.restore_run(sys.argv[1])
evaluated = experiment.evaluate_states(exp, states)
out = {"num_models": exp.spec.num_models, "test_points": int(evaluated["codes"].shape[1])}
with figure_workers.FigurePool(exp.spec.analysis.figure_workers) as pool:
    pool.draw([])  # the pool's workers start and warm up before the clock, as in main.py
    time.sleep(5)
    for pdf in (True, False, True, False):
        variant = with_figure_format(exp, pdf)
        t0 = time.perf_counter()
        figures.write_run_figures(variant, states, evaluated, tempfile.mkdtemp(), pool=pool)
        out.setdefault("png_and_pdf_s" if pdf else "png_only_s", []).append(
            time.perf_counter() - t0
        )
    out["workers"] = pool.workers
print(json.dumps(out))
"""


def figures_only(scratch: str) -> dict:
    """A single model's figure set, timed alone: an own-prior run of one epoch (figures
    off) is trained, then a fresh process restores it and calls `write_run_figures` four
    times (PNG + PDF, PNG only, twice each; the first pair pays the compilation of the
    arrays' program, the second finds it compiled), with a warm `FigurePool` as main.py has."""
    workdir = os.path.join(scratch, "figures_run")
    cache = os.path.join(scratch, "cache_figures")
    run_main(
        "figures_run",
        "configs/mnist_custom_prior.py",
        ["--config.train.epochs=1", "--config.analysis.figures=False"],
        workdir,
        cache,
    )
    env = dict(
        os.environ,
        PYTHONPATH=common.REPO_ROOT,
        JAX_COMPILATION_CACHE_DIR=cache,
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    proc = subprocess.run(
        [sys.executable, "-c", FIGURES, workdir],
        capture_output=True,
        text=True,
        env=env,
        cwd=common.REPO_ROOT,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"figures failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(quick: bool, scratch: str) -> dict:
    tiny_cache = os.path.join(scratch, "cache_tiny")
    cases = {}
    cases["tiny_cold"] = run_main(
        "tiny_cold", "configs/mnist.py:tiny", [], os.path.join(scratch, "tiny_cold"), tiny_cache
    )
    cases["tiny_warm"] = run_main(
        "tiny_warm", "configs/mnist.py:tiny", [], os.path.join(scratch, "tiny_warm"), tiny_cache
    )
    prior_dir = os.path.join(scratch, "own_prior")
    # each config first with an empty compilation cache, then its everyday second run: a
    # new workdir, the same (now warm) cache
    runs = {
        "own_prior": (
            "configs/mnist_custom_prior.py",
            ["--config.train.epochs=3"],
            "cache_own_prior",
        ),
        "grid_2x2": ("configs/mnist_sweep.py", GRID, "cache_grid"),
    }
    for suffix in ("", "_warm"):
        for name, (config, overrides, cache) in runs.items():
            cases[name + suffix] = run_main(
                name + suffix,
                config,
                overrides,
                os.path.join(scratch, name + suffix),
                os.path.join(scratch, cache),
            )
    load_cache = os.path.join(scratch, "cache_load_run")
    load_cold = load_run_to_encode(prior_dir, load_cache)
    load_warm = [load_run_to_encode(prior_dir, load_cache) for _ in range(1 if quick else 3)]
    warm = min(load_warm, key=lambda r: r["wall_s"])

    prior = cases["own_prior"]
    epochs = 3
    per_epoch = prior["phases"]["train"] / epochs
    paper_eval_share = 20 * prior["phases"]["evaluate"] / (200 * per_epoch)
    targets = {
        "tiny_total_cold_s": cases["tiny_cold"]["total_s"],
        "tiny_total_warm_s": cases["tiny_warm"]["total_s"],
        "tiny_cold_over_warm": round(
            cases["tiny_cold"]["total_s"] / cases["tiny_warm"]["total_s"], 3
        ),
        "own_prior_non_training_over_training": prior["non_training_over_training"],
        "grid_2x2_non_training_over_training": cases["grid_2x2"]["non_training_over_training"],
        "own_prior_warm_non_training_over_training": cases["own_prior_warm"][
            "non_training_over_training"
        ],
        "grid_2x2_warm_non_training_over_training": cases["grid_2x2_warm"][
            "non_training_over_training"
        ],
        "own_prior_evaluate_over_training": prior["evaluate_over_training"],
        "grid_2x2_evaluate_over_training": cases["grid_2x2"]["evaluate_over_training"],
        "paper_run_projected_evaluation_share": round(paper_eval_share, 4),
        "tiny_warm_figures_s_per_model": cases["tiny_warm"]["figures_s_per_model"],
        "own_prior_figures_s_per_model": prior["figures_s_per_model"],
        "grid_2x2_figures_s_per_model": cases["grid_2x2"]["figures_s_per_model"],
        "load_run_to_first_encode_warm_s": round(warm["import_to_first_encode_s"], 3),
        "load_run_process_start_to_first_encode_warm_s": round(warm["process_age_at_encode_s"], 3),
        "load_run_imports_matplotlib": warm["matplotlib_imported"],
    }
    return {
        "cases": cases,
        "load_run": {"cold": load_cold, "warm": load_warm},
        "targets": targets,
    }


def table(result: dict) -> list[dict]:
    t = result["targets"]
    c = result["cases"]
    return [
        common.row(
            "tiny, process start to figures, cold cache",
            common.sig(t["tiny_total_cold_s"]),
            "s",
            "target <= 15",
        ),
        common.row(
            "tiny, process start to figures, warm cache",
            common.sig(t["tiny_total_warm_s"]),
            "s",
            "target <= 6",
        ),
        common.row(
            "own prior, 3 epochs: non-training / training",
            common.sig(t["own_prior_non_training_over_training"], 3),
            "x",
            f"train {c['own_prior']['phases']['train']:.1f} s of {c['own_prior']['total_s']:.1f} s; target <= 1",
        ),
        common.row(
            "2x2 grid, 3 epochs: non-training / training",
            common.sig(t["grid_2x2_non_training_over_training"], 3),
            "x",
            f"train {c['grid_2x2']['phases']['train']:.1f} s of {c['grid_2x2']['total_s']:.1f} s; target <= 1",
        ),
        common.row(
            "own prior, 3 epochs, warm cache: non-training / training",
            common.sig(t["own_prior_warm_non_training_over_training"], 3),
            "x",
            f"train {c['own_prior_warm']['phases']['train']:.1f} s of "
            f"{c['own_prior_warm']['total_s']:.1f} s; the second run of the config",
        ),
        common.row(
            "2x2 grid, 3 epochs, warm cache: non-training / training",
            common.sig(t["grid_2x2_warm_non_training_over_training"], 3),
            "x",
            f"train {c['grid_2x2_warm']['phases']['train']:.1f} s of "
            f"{c['grid_2x2_warm']['total_s']:.1f} s; the second run of the config",
        ),
        common.row(
            "paper run, projected evaluation / training",
            common.sig(t["paper_run_projected_evaluation_share"], 3),
            "x",
            "20 x own-prior evaluate / (200 x its train s per epoch); target <= 0.05",
        ),
        common.row(
            "figures per model (own prior)",
            common.sig(t["own_prior_figures_s_per_model"], 3),
            "s",
            "target <= 5",
        ),
        common.row(
            "figures per model (2x2 grid)",
            common.sig(t["grid_2x2_figures_s_per_model"], 3),
            "s",
            "",
        ),
        common.row(
            "load_run to first encode, warm",
            common.sig(t["load_run_to_first_encode_warm_s"], 3),
            "s",
            f"import included; Matplotlib imported: {t['load_run_imports_matplotlib']}; target <= 3",
        ),
    ]


def _options(parser) -> None:
    parser.add_argument("--label", default=None, help="e.g. before / after")
    parser.add_argument(
        "--figures-only",
        action="store_true",
        help="time only a single model's figure set (`figures_only`), stored under the "
        "label's `figures_only` key",
    )


def _figures_only(args, scratch: str) -> None:
    measured = figures_only(scratch)
    measured["machine"] = common.machine()
    label = args.label or "latest"
    path = os.path.join(common.results_dir(), "overhead.json")
    doc: dict = {}
    if os.path.exists(path):
        with open(path) as f:
            doc = json.load(f)
    runs = doc.get("runs", {})
    runs.setdefault(label, {})["figures_only"] = measured
    payload = {k: v for k, v in doc.items() if k not in ("benchmark", "summary", "machine")}
    payload["runs"] = runs
    summary = (
        f"figures of one model: PNG + PDF {min(measured['png_and_pdf_s']):.1f} s, PNG only "
        f"{min(measured['png_only_s']):.1f} s (best of 2)"
    )
    common.write_json("overhead", payload, summary)


def main() -> None:
    args = common.parse_args(
        "main.py's overhead around training (issue 24)",
        _options,
    )
    scratch = tempfile.mkdtemp(prefix="exon_overhead_")
    try:
        if args.figures_only:
            return _figures_only(args, scratch)
        result = measure(args.quick, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result["table"] = table(result)
    t = result["targets"]
    summary = (
        f"tiny {t['tiny_total_cold_s']:.1f} s cold / {t['tiny_total_warm_s']:.1f} s warm; "
        f"non-training/training own prior {t['own_prior_non_training_over_training']:.2f}, "
        f"grid {t['grid_2x2_non_training_over_training']:.2f} (warm cache "
        f"{t['own_prior_warm_non_training_over_training']:.2f}, "
        f"{t['grid_2x2_warm_non_training_over_training']:.2f}); load_run->encode "
        f"{t['load_run_to_first_encode_warm_s']:.1f} s"
    )
    payload: dict = result
    if args.label:
        path = os.path.join(common.results_dir(), "overhead.json")
        runs = {}
        if os.path.exists(path):
            with open(path) as f:
                runs = json.load(f).get("runs", {})
        runs[args.label] = {**result, "machine": common.machine(), "quick": args.quick}
        payload = {"runs": runs, "table": result["table"], "latest": args.label}
    common.write_json("overhead", payload, summary)


if __name__ == "__main__":
    main()
