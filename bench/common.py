"""Shared helpers of the benchmark scripts in bench/.

Every script:
  * runs as `python -m bench.<name> [--quick] [--repeats N]` from the repository root
    (bench is a package there; it imports `from bench import common`);
  * warms up before timing and calls `jax.block_until_ready` around every timed call;
  * writes one JSON file, bench/results/<machine id>/<name>.json, with the machine
    description (and its `machine_id`, see `machine_id`), the
    figures (median/min/max/all of the repeated runs) and a `table` of display rows that
    bench/run_all.py copies into README.md unedited;
  * prints a one-line summary.

`--quick` means fewer repeats (and, where said, smaller problems); it is what
`python -m bench.run_all --quick` passes, and the whole quick suite must finish in under
10 minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
RESULTS_DIR = os.path.join(BENCH_DIR, "results")

# ------------------------------------------------------------------ allocator

ALLOCATOR: dict[str, Any] = {"tuned": False}


def tune_allocator() -> dict[str, Any]:
    """`exon_jax.ops.host_allocator.tune()` (what main.py applies), recorded in `ALLOCATOR`
    (and in every JSON's `allocator` where a script calls it)."""
    from exon_jax.ops import host_allocator

    ALLOCATOR.clear()
    ALLOCATOR.update(host_allocator.tune())
    return ALLOCATOR


import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

MATMUL_N = 2048
_LOAD_AT_START = os.getloadavg() if hasattr(os, "getloadavg") else None


# ------------------------------------------------------------------ arguments


def parse_args(description: str, extra: Callable[[argparse.ArgumentParser], None] | None = None):
    """The common flags: --quick (fewer repeats) and --repeats N (override)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer repeats (and smaller problems where the script says so)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed repeats per figure (default: the script's, fewer with --quick)",
    )
    if extra is not None:
        extra(parser)
    return parser.parse_args()


def repeats(args, full: int, quick: int) -> int:
    """The number of timed repeats: --repeats if given, else `quick` or `full`."""
    if args.repeats is not None:
        return max(1, args.repeats)
    return quick if args.quick else full


# ------------------------------------------------------------------ machine


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_ids() -> dict[str, Any]:
    """vendor_id, cpu family, model and stepping of the first CPU (tells e.g. Zen 4 from
    Zen 5 where both call themselves "AMD EPYC")."""
    out: dict[str, Any] = {}
    fields = {
        "vendor_id": "cpu_vendor",
        "cpu family": "cpu_family",
        "model": "cpu_model_number",
        "stepping": "cpu_stepping",
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                key = key.strip()
                if key in fields:
                    value = value.strip()
                    out[fields[key]] = int(value) if value.isdigit() else value
    except OSError:
        pass
    return out


def _cpu_flags() -> list[str]:
    """The SIMD / matrix-unit flags that matter for matmul speed (AVX-512, AMX, ...)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    keep = (
                        "avx2",
                        "fma",
                        "avx512f",
                        "avx512_bf16",
                        "avx512_fp16",
                        "avx512_vnni",
                        "amx_bf16",
                        "amx_tile",
                        "amx_int8",
                    )
                    return [f for f in keep if f in flags]
    except OSError:
        pass
    return []


def _ram_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 2)
    except OSError:
        pass
    return None


def _peak_rss_mib() -> float | None:
    try:
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    except Exception:  # noqa: BLE001
        return None


def machine() -> dict[str, Any]:
    """Where and when the figures were measured."""
    import jaxlib

    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    load_now = os.getloadavg() if hasattr(os, "getloadavg") else None
    described = {
        "cpu_model": _cpu_model(),
        **_cpu_ids(),
        "cpu_flags": _cpu_flags(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "ram_gib": _ram_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "device_kinds": sorted({d.device_kind for d in jax.devices()}),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "loadavg_1_5_15_at_start": [round(x, 2) for x in _LOAD_AT_START]
        if _LOAD_AT_START
        else None,
        "loadavg_1_5_15_at_end": [round(x, 2) for x in load_now] if load_now else None,
        "env": {
            k: os.environ[k]
            for k in (
                "XLA_FLAGS",
                "GLIBC_TUNABLES",
                "JAX_PLATFORMS",
                "OMP_NUM_THREADS",
                "JAX_COMPILATION_CACHE_DIR",
            )
            if k in os.environ
        },
        "compilation_cache_dir": jax.config.jax_compilation_cache_dir,
        "peak_rss_mib": _peak_rss_mib(),
    }
    described["machine_id"] = machine_id(described)
    return described


_ID_FIELDS = ("cpu_model", "cpu_vendor", "cpu_family", "cpu_model_number", "cpu_flags", "cpu_count")


def machine_id(described: dict[str, Any]) -> str:
    """A short, stable name of the machine a result was measured on, computed from the
    result's own `machine` record (so old JSON files get the same id as when they were
    written): the CPU model, vendor/family/model numbers where recorded, the matmul-relevant
    flags and the core count; e.g. `amd-epyc-f25m17-2c-3f9a1c`. RAM, dates and load are not
    part of it."""
    import hashlib
    import re

    name = re.sub(r"\(r\)|\(tm\)", "", str(described.get("cpu_model", "unknown")).lower())
    slug = re.sub(r"[^a-z0-9]+", "-", name).strip("-") or "cpu"
    family, model = described.get("cpu_family"), described.get("cpu_model_number")
    if family is not None and model is not None:
        slug += f"-f{family}m{model}"
    slug += f"-{described.get('cpu_count')}c"
    key = json.dumps({k: described.get(k) for k in _ID_FIELDS}, sort_keys=True)
    return f"{slug}-{hashlib.sha1(key.encode()).hexdigest()[:6]}"


def this_machine_id() -> str:
    """machine_id() of the machine running this process."""
    return machine()["machine_id"]


def results_dir(machine_name: str | None = None) -> str:
    """bench/results/<machine id>/: every machine's figures live apart, so that a run on one
    machine never removes or overwrites another machine's results."""
    return os.path.join(RESULTS_DIR, machine_name or this_machine_id())


# ------------------------------------------------------------------ timing


def summarize(times: list[float]) -> dict[str, Any]:
    """median / min / max / mean / all of a list of seconds."""
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "mean_s": statistics.fmean(times),
        "n": len(times),
        "all_s": [round(t, 6) for t in times],
    }


def timeit(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> dict[str, Any]:
    """Calls `fn()` `warmup` times untimed, then `repeats` times timed, one at a time.

    Every call is wrapped as t0; block_until_ready(fn()); t1, so each figure is the wall
    time of one complete call (dispatch + compute + sync). `fn` may carry state between
    calls through a closure (e.g. a donated train state).

    Returns:
      summarize(times): median_s, min_s, max_s, mean_s, n, all_s.
    """
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return summarize(times)


# ------------------------------------------------------------------ FLOPs


def matmul_flops(
    dtype: str = "float32", n: int = MATMUL_N, repeats: int = 10, warmup: int = 3
) -> dict[str, Any]:
    """Dense matmul throughput of this machine through jax: an n x n @ n x n product.

    dtype "float32": float32 operands and result. dtype "bfloat16": bfloat16 operands,
    float32 accumulation and result (`preferred_element_type=jnp.float32`), the product
    exon_jax's bfloat16 compute mode uses.

    Returns:
      {"dtype", "n", "flop": 2 n^3, "flops_per_s" (from the median), "best_flops_per_s",
       "time": timeit stats}.
    """
    key_a, key_b = jax.random.split(jax.random.key(0))
    in_dtype = jnp.bfloat16 if dtype == "bfloat16" else jnp.float32
    a = jax.random.normal(key_a, (n, n), jnp.float32).astype(in_dtype)
    b = jax.random.normal(key_b, (n, n), jnp.float32).astype(in_dtype)
    product = jax.jit(lambda a, b: jnp.matmul(a, b, preferred_element_type=jnp.float32))
    stats = timeit(lambda: product(a, b), repeats=repeats, warmup=warmup)
    flop = 2.0 * n**3
    return {
        "dtype": dtype,
        "n": n,
        "flop": flop,
        "flops_per_s": flop / stats["median_s"],
        "best_flops_per_s": flop / stats["min_s"],
        "time": stats,
    }


def matmul_rates(quick: bool) -> dict[str, Any]:
    """float32 and bf16-input matmul throughput, measured now (same run as the figures)."""
    reps = 6 if quick else 15
    return {
        "float32": matmul_flops("float32", repeats=reps),
        "bfloat16": matmul_flops("bfloat16", repeats=reps),
    }


def bracket_rates(before: dict[str, Any], quick: bool) -> dict[str, Any]:
    """Measures the matmul rates again (after the figures) and keeps, per dtype, the higher
    of the two as `flops_per_s`: other load on the machine only lowers a measurement, so
    the higher is the better estimate of what the machine can do, and fractions against it
    are conservative. Both measurements stay in the result."""
    after = matmul_rates(quick)
    out = {}
    for dtype in before:
        best = max(before[dtype]["flops_per_s"], after[dtype]["flops_per_s"])
        out[dtype] = {"flops_per_s": best, "before": before[dtype], "after": after[dtype]}
    return out


def fractions(achieved: float | None, rates: dict[str, Any]) -> dict[str, float | None]:
    """achieved FLOP/s as fractions of the float32 and bf16-input matmul rates."""
    if not achieved:
        return {"fraction_of_fp32_matmul": None, "fraction_of_bf16_matmul": None}
    return {
        "fraction_of_fp32_matmul": achieved / rates["float32"]["flops_per_s"],
        "fraction_of_bf16_matmul": achieved / rates["bfloat16"]["flops_per_s"],
    }


def cost(compiled) -> dict[str, float]:
    """XLA's own cost analysis of a compiled executable as a flat dict (list-or-dict safe)."""
    analysis = compiled.cost_analysis()
    if analysis is None:
        return {}
    if isinstance(analysis, (list, tuple)):
        merged: dict[str, float] = {}
        for part in analysis:
            for k, v in (part or {}).items():
                merged[k] = merged.get(k, 0.0) + float(v)
        return merged
    return {k: float(v) for k, v in analysis.items()}


def xla_flops(compiled) -> float | None:
    """FLOPs of one execution of `compiled` (`jitted.lower(...).compile()`), per XLA's cost
    analysis; None where the backend gives none.

    Caveat measured on XLA:CPU with jax 0.10: a `lax.scan` (a while loop) is counted
    ONCE, not times its trip count; bench/epoch.py checks this against the steps.
    """
    flops = cost(compiled).get("flops")
    return None if flops is None else float(flops)


def memory(compiled) -> dict[str, Any]:
    """compiled.memory_analysis() in bytes and GiB (arguments + outputs + temporaries - aliased)."""
    analysis = compiled.memory_analysis()
    if analysis is None:
        return {}
    fields = (
        "argument_size_in_bytes",
        "output_size_in_bytes",
        "temp_size_in_bytes",
        "alias_size_in_bytes",
        "generated_code_size_in_bytes",
    )
    out = {f: int(getattr(analysis, f, 0) or 0) for f in fields}
    total = (
        out["argument_size_in_bytes"]
        + out["output_size_in_bytes"]
        + out["temp_size_in_bytes"]
        - out["alias_size_in_bytes"]
    )
    out["total_bytes"] = total
    out["total_gib"] = total / 2**30
    return out


def dense_matmul_flops(params, batch: int, data_dim: int) -> float:
    """Analytic FLOPs of the dense (2-D kernel) products of one training step.

    Forward x.W, weight gradient x^T.g and input gradient g.W^T: 3 x 2 B i o per dense
    layer, less the input gradient of layers that read the data itself (kernels with
    `data_dim` inputs: nothing needs a gradient there). Meaningful for the MLP network.
    """
    total = 0.0
    for leaf in jax.tree.leaves(params):
        if getattr(leaf, "ndim", 0) == 2:
            i, o = leaf.shape
            total += (4.0 if i == data_dim else 6.0) * batch * i * o
    return total


# ------------------------------------------------------------------ experiments


def mnist_config(compute_dtype: str = "float32"):
    """configs/mnist.py (the paper's MNIST setting), reading data/mnist/ local files."""
    from configs import mnist

    config = mnist.get_config()
    config.data.source = "files"
    config.data.dir = os.path.join(REPO_ROOT, "data")
    config.model.compute_dtype = compute_dtype
    config.analysis.figures = False
    return config


_MNIST = None


def mnist_dataset():
    """The real MNIST arrays (loaded once per process)."""
    global _MNIST
    if _MNIST is None:
        from exon_jax import data as data_lib

        _MNIST = data_lib.load_dataset("mnist", "files", os.path.join(REPO_ROOT, "data"))
    return _MNIST


def cifar_config(compute_dtype: str = "float32"):
    """The CIFAR-10 setting: configs/cifar10.py where it exists, else built here from
    configs/mnist.py (conv network, d = 300, blocks prior, weighted Gaussian likelihood,
    Adam 5e-3, 128 unlabelled + 32 labelled a step, 1 000 labelled per class).

    Returns:
      (config, source) where source says which of the two it was.
    """
    path = os.path.join(REPO_ROOT, "configs", "cifar10.py")
    if os.path.exists(path):
        import importlib

        module = importlib.import_module("configs.cifar10")
        config = module.get_config()
        source = "configs/cifar10.py"
    else:
        from configs import mnist

        config = mnist.get_config()
        config.data.name = "cifar10"
        config.data.labelled_per_class = 1000
        config.model.network = "conv"
        config.model.latent_dim = 300
        config.prior.layout = "blocks"
        config.loss.likelihood = "weighted_gaussian"
        config.optimizer.name = "adam"
        config.optimizer.learning_rate = 5e-3
        config.train.batch_unlabelled = 128
        config.train.batch_labelled = 32
        source = "bench/common.py overrides of configs/mnist.py (configs/cifar10.py absent)"
    config.data.source = "files"
    config.data.max_unlabelled = 0
    config.model.compute_dtype = compute_dtype
    config.analysis.figures = False
    return config, source


def cifar_dataset(num_train: int = 50_000, num_test: int = 1_000, seed: int = 0):
    """Generated CIFAR-10-shaped arrays: uint8 [N, 32, 32, 3], balanced labels.

    Content does not change the speed of a step; shapes and dtypes do.
    """
    from exon_jax import data as data_lib

    rng = np.random.default_rng(seed)

    def split(n):
        images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        labels = rng.permutation(np.arange(n) % 10).astype(np.int32)
        return data_lib.ImageSplit(images=images, labels=labels)

    return data_lib.ImageDataset(
        train=split(num_train),
        test=split(num_test),
        name="cifar10",
        class_names=data_lib.CIFAR10_CLASS_NAMES,
    )


def single_model(exp):
    """(state, hparams) of model 0 of an experiment, without the model axis."""
    from exon_jax import experiment, train

    states = experiment.init_states(exp)
    hparams = experiment.sharded_hparams(exp)
    return train.unstack_tree(states, 0), train.unstack_tree(hparams, 0)


def first_batch(exp, data):
    """The first batch of epoch 0 (the batch order of `experiment.epoch_key`), gathered on
    device."""
    from exon_jax import batching, experiment, train

    s = exp.spec.settings
    u_order, l_order = batching.epoch_batch_indices(
        experiment.epoch_key(exp.spec.data.seed, 0, exp.mesh),
        s.num_unlabelled,
        s.num_labelled,
        s.batch_unlabelled,
        s.batch_labelled,
    )
    return jax.block_until_ready(jax.jit(train.gather_batch)(data, u_order[0], l_order[0]))


# ------------------------------------------------------------------ output


def sig(x: float | None, digits: int = 4):
    """x rounded to `digits` significant digits (None stays None); for display rows."""
    if x is None or not math.isfinite(x) or x == 0:
        return x
    ndigits = digits - 1 - int(math.floor(math.log10(abs(x))))
    return int(round(x, ndigits)) if ndigits <= 0 else round(x, ndigits)


def row(metric: str, value, unit: str = "", note: str = "") -> dict[str, Any]:
    """One display row of the README table."""
    return {"metric": metric, "value": value, "unit": unit, "note": note}


def write_json(name: str, payload: dict[str, Any], summary: str) -> str:
    """Writes bench/results/<machine id>/<name>.json (with the machine description added)
    and prints the one-line summary. Returns the path."""
    described = machine()
    doc = {"benchmark": name, "summary": summary, "machine": described, **payload}
    folder = results_dir(described["machine_id"])
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=2, default=_jsonable)
        f.write("\n")
    print(f"[{name}] {summary}  -> {os.path.relpath(path, REPO_ROOT)}", flush=True)
    return path


def _jsonable(obj):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "tolist"):
        return np.asarray(obj).tolist()
    return str(obj)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ TensorFlow reference


def write_tf_skipped(name: str, metric: str, reason: str) -> None:
    """bench/results/<machine>/<name>.json saying why the TF comparison could not run."""
    write_json(
        name,
        {"skipped": reason, "install": TF_INSTALL, "table": [row(metric, "skipped", "", reason)]},
        f"skipped: {reason}",
    )


TF_INSTALL = (
    'TFREF=<a folder outside the repository>; python3 -m venv "$TFREF" && '
    '"$TFREF/bin/pip" install "tensorflow-cpu==2.21.*"; then pass --tf-python '
    '"$TFREF/bin/python" or set TFREF (see ../shared/refbench/README.md)'
)


def add_tf_options(parser: argparse.ArgumentParser) -> None:
    """--tf-python and --refbench: where the TensorFlow reference lives (no machine's paths
    are written into the scripts)."""
    parser.add_argument(
        "--tf-python",
        default=None,
        help="python of the TensorFlow reference venv (default: $TFREF_PYTHON, "
        "else $TFREF/bin/python)",
    )
    parser.add_argument(
        "--refbench",
        default=None,
        help="tf_keras_step.py (default: $REFBENCH_SCRIPT, else "
        "../shared/refbench/tf_keras_step.py beside the checkout)",
    )


def tf_reference(args) -> tuple[str | None, str | None, str | None]:
    """(tf_python, refbench_script, why_not): the TensorFlow interpreter from --tf-python,
    $TFREF_PYTHON or $TFREF/bin/python; the script from --refbench, $REFBENCH_SCRIPT or the
    repository layout (<checkout>/../shared/refbench/tf_keras_step.py). why_not says what
    is missing (None when both are found)."""
    python = getattr(args, "tf_python", None) or os.environ.get("TFREF_PYTHON")
    if not python and os.environ.get("TFREF"):
        python = os.path.join(os.environ["TFREF"], "bin", "python")
    script = (
        getattr(args, "refbench", None)
        or os.environ.get("REFBENCH_SCRIPT")
        or os.path.join(REPO_ROOT, "..", "shared", "refbench", "tf_keras_step.py")
    )
    script = os.path.abspath(script)
    if not os.path.exists(script):
        return python, None, f"refbench script not found at {script} (--refbench)"
    if not python:
        return None, script, "no TensorFlow reference interpreter given (--tf-python or $TFREF)"
    if not os.path.exists(python):
        return python, script, f"TensorFlow reference interpreter {python} not found"
    return python, script, None


def run_tf(
    python: str, script: str, steps: int, xla: bool, extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    """One fresh run of the refbench script; its JSON line (steps/s after its own warm-up)."""
    import subprocess

    cmd = [python, script, "--steps", str(steps)] + (["--xla"] if xla else []) + list(extra)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    lines = [l for l in proc.stdout.splitlines() if l.strip().startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd)} failed (rc {proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(lines[-1])
