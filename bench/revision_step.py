"""The revised method's MNIST-100 training step against the authors' own step, in one run.

exon_jax: the step of configs/mnist100_revision.py (96 unlabelled + 32 labelled images;
the classifier runs on 384 images, 288 of them with gradients), jitted, state donated, one
step per call as `main.py` runs it on CPU, on the first batch of real MNIST. Theirs:
`train` of their mnist/main.py, eager TensorFlow, through bench/official_driver.py in the
TensorFlow reference venv (--tf-python or $TFREF, as bench/tf_reference.py) from a clone
of an-seunghwan/EXoN_official (--official or $EXON_OFFICIAL). Their per-step time is the
difference of two calls of their `train` (n_long and n_short steps) divided by the
difference in steps, so the per-call start of their data pipeline (a shuffle buffer of
60 000 images) is not counted; the rounds alternate between the two programs.

Also timed in the same rounds: our step with shifted conv weight gradients, and our step
with XLA:CPU's own flags (convolutions in YNNPACK fusions; a child process started with
EXON_XLA_CPU_TUNING=0, since XLA's flags are fixed per process: `exon_jax.ops.xla_flags`).
Also timed, after the rounds (once the other processes are closed), in as many rounds:
the products floor (bench/products.py), every convolution and dot of our step (gradients
included) timed as a bare matmul of equal work each, so the authors' time over it is the
largest speed-up that products at this machine's matmul speed for their shapes allow.
Also recorded: XLA's FLOP count of our step, the float32 matmul rate of this machine
before and after the rounds (the higher kept), and where our step's time goes: the
augmentation, the pseudo-label pass and the classifier forward+backward alone.

  TFREF=<venv> EXON_OFFICIAL=<clone> python -m bench.revision_step [--quick] [--dataset cifar10]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from bench import common, products

import jax
import jax.numpy as jnp

from exon_jax import experiment, train
from exon_jax.revision import augment


def our_step(dataset: str = "mnist", conv_layout: str = "auto"):
    """(experiment, compiled step, state, hparams, batch) of the MNIST-100 (real MNIST) or
    CIFAR-10-4000 (generated 32x32x3 images) revision config, its classifier
    convolutions' weight gradients as `conv_layout` (config.train)."""
    from configs import cifar10_4000_revision, mnist100_revision

    if dataset == "cifar10":
        config = cifar10_4000_revision.get_config()
        images = common.cifar_dataset()
    else:
        config = mnist100_revision.get_config()
        config.data.source = "files"
        config.data.dir = os.path.join(common.REPO_ROOT, "data")
        images = common.mnist_dataset()
    config.train.conv_layout = conv_layout
    exp = experiment.build_experiment(config, images)
    state, hparams = common.single_model(exp)
    data = experiment.device_data(exp)
    unlabelled, labelled = exp.spec.settings.batch_indices(
        experiment.epoch_key(exp.spec.data.seed, 0, exp.mesh)
    )
    batch = jax.jit(train.gather_batch)(data, unlabelled[0], labelled[0])
    step = exp.spec.train_step
    jitted = jax.jit(step, donate_argnums=0)
    compiled = jitted.lower(state, hparams, batch).compile()
    return exp, compiled, state, hparams, batch


def parts(exp, state, batch, augmentation: str = "mnist"):
    """Jitted pieces of the step for the breakdown: name -> zero-argument call."""
    model = exp.spec.model
    x = 2.0 * batch[0] - 1.0
    variables = {"params": state.params["model"], "batch_stats": state.batch_stats}
    key = jax.random.key(0)
    aug = jax.jit(lambda k, x: augment.augment_batch(k, x, augmentation))

    def classify(params, x):
        logits, _ = model.apply(
            {"params": params, "batch_stats": state.batch_stats},
            x,
            train=True,
            method=model.classify_signed,
            mutable=["batch_stats"],
            rngs={"dropout": key},
        )
        return logits

    forward = jax.jit(lambda x: classify(variables["params"], x))
    backward = jax.jit(jax.grad(lambda params, x: jnp.sum(jax.nn.log_softmax(classify(params, x)))))
    x288 = jnp.concatenate([x, x, x[:32]])[:288]
    return {
        "augmentation of 128 images": lambda: aug(key, x),
        "pseudo-label pass (classifier forward, 96 images)": lambda: forward(x[:96]),
        "classifier forward + backward, 288 images": lambda: backward(variables["params"], x288),
    }


class _LineServer:
    """A long-lived subprocess answering "N" with {"seconds": s} for N steps (one JSON line each)."""

    def __init__(self, argv: list[str], env: dict | None = None, cwd: str | None = None):
        self.stderr = tempfile.TemporaryFile("w+")  # TensorFlow logs plenty there
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            env=env,
            cwd=cwd,
        )
        self.ready = json.loads(self._line())

    def _line(self) -> str:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=60)
            self.stderr.seek(0)
            last = [x for x in self.stderr.read().splitlines() if x.strip()][-1:]
            raise RuntimeError(
                f"{self.proc.args[1:3]} ended before answering (status "
                f"{self.proc.returncode}): {last[0] if last else 'nothing on stderr'}"
            )
        return line

    def seconds(self, steps: int) -> float:
        self.proc.stdin.write(f"{steps}\n")
        self.proc.stdin.flush()
        return json.loads(self._line())["seconds"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=120)
        self.stderr.close()


def official(python: str, clone: str, dataset: str) -> _LineServer:
    """Their step in bench/official_driver.py under the TensorFlow reference venv."""
    driver = os.path.join(common.BENCH_DIR, "official_driver.py")
    mnist = os.path.join(common.REPO_ROOT, "data", "mnist", "mnist.npz")
    return _LineServer(
        [python, driver, "--official", clone, "--mnist", mnist, "--dataset", dataset]
    )


def stock_xla_flags(dataset: str) -> _LineServer:
    """Our step in a child process with XLA:CPU's own flags (EXON_XLA_CPU_TUNING=0: its
    convolutions in YNNPACK fusions, as before `exon_jax.ops.xla_flags`)."""
    from exon_jax.ops import xla_flags

    env = dict(os.environ, EXON_XLA_CPU_TUNING="0")
    env["XLA_FLAGS"] = xla_flags.without(env.get("XLA_FLAGS", ""))
    argv = [sys.executable, "-m", "bench.revision_step", "--serve", "--dataset", dataset]
    return _LineServer(argv, env=env, cwd=common.REPO_ROOT)


def serve(dataset: str) -> None:
    """`--serve`: our step on stdin's requests (the `_LineServer` protocol)."""
    common.tune_allocator()
    _, compiled, state, hparams, batch = our_step(dataset)
    holder = {"state": state}
    for _ in range(2):
        holder["state"], metrics = compiled(holder["state"], hparams, batch)
    jax.block_until_ready(metrics)
    print(json.dumps({"ready": True, "XLA_FLAGS": os.environ.get("XLA_FLAGS", "")}), flush=True)
    for line in sys.stdin:
        steps = int(line)
        t0 = time.perf_counter()
        for _ in range(steps):
            holder["state"], metrics = compiled(holder["state"], hparams, batch)
        jax.block_until_ready(metrics)
        print(json.dumps({"steps": steps, "seconds": time.perf_counter() - t0}), flush=True)


def main():
    args = common.parse_args(
        __doc__.splitlines()[0],
        lambda p: (
            common.add_tf_options(p),
            p.add_argument("--official", default=os.environ.get("EXON_OFFICIAL")),
            p.add_argument("--dataset", default="mnist", choices=("mnist", "cifar10")),
            p.add_argument("--serve", action="store_true", help="(internal) stock_xla_flags"),
        ),
    )
    if args.serve:
        return serve(args.dataset)
    cifar = args.dataset == "cifar10"
    common.tune_allocator()
    # Their CIFAR-10 step runs eagerly for minutes on 2 cores: fewer rounds and steps there.
    rounds = common.repeats(args, full=3 if cifar else 5, quick=1 if cifar else 3)
    ours_per_round = 2 if cifar else 10  # a CIFAR-10 step takes tens of seconds here
    n_short, n_long = (1, 3) if cifar else (2, 6) if args.quick else (2, 10)
    rates = common.matmul_rates(args.quick)

    exp, compiled, state, hparams, batch = our_step(args.dataset)
    flops = common.xla_flops(compiled)
    holder = {"state": state}

    def ours():
        holder["state"], metrics = compiled(holder["state"], hparams, batch)
        return metrics

    _, compiled_shifted, state_shifted, _, _ = our_step(args.dataset, "shifted")
    holder["shifted"] = state_shifted

    def ours_shifted():  # conv weight gradients as one matmul per kernel offset
        holder["shifted"], metrics = compiled_shifted(holder["shifted"], hparams, batch)
        return metrics

    found = products.matmul_shapes(exp.spec.train_step, state, hparams, batch)
    jax.block_until_ready(ours())
    jax.block_until_ready(ours_shifted())
    python, _, why_not = common.tf_reference(args)
    theirs = None
    if why_not is None and args.official:
        common.log("starting the authors' step (bench/official_driver.py) ...")
        theirs = official(python, args.official, args.dataset)
    elif why_not is None:
        why_not = "no clone of an-seunghwan/EXoN_official given (--official or $EXON_OFFICIAL)"

    common.log("starting our step with XLA:CPU's own flags (a child process) ...")
    stock = stock_xla_flags(args.dataset)
    ours_times, shifted_times, stock_times, their_steps = [], [], [], []
    for r in range(rounds):
        for fn, times in ((ours, ours_times), (ours_shifted, shifted_times)):
            t0 = time.perf_counter()
            for _ in range(ours_per_round):
                jax.block_until_ready(fn())
            times.append((time.perf_counter() - t0) / ours_per_round)
        stock_times.append(stock.seconds(ours_per_round) / ours_per_round)
        if theirs is not None:
            short, long = theirs.seconds(n_short), theirs.seconds(n_long)
            their_steps.append((long - short) / (n_long - n_short))
        common.log(f"round {r}: ours {ours_times[-1]:.3f} s/step, theirs {their_steps[-1:]} s/step")
    stock.close()
    if theirs is not None:
        theirs.close()
    # After the rounds, with the other processes closed: a CIFAR-10 step's largest product
    # alone has 1.4 GB of operands, and all three processes held ~21 GB on 24 GB.
    floor_times = [products.floor_seconds(found, repeats=3) for _ in range(rounds)]
    breakdown = {
        name: common.timeit(fn, repeats=rounds, warmup=1)["median_s"]
        for name, fn in parts(exp, holder["state"], batch, "cifar" if cifar else "mnist").items()
    }
    rates = common.bracket_rates(rates, args.quick)
    ours_s = statistics.median(ours_times)
    achieved = flops / ours_s if flops else None
    payload = {
        "config": (
            "configs/cifar10_4000_revision.py (96 + 32 generated 32x32x3 images a step)"
            if cifar
            else "configs/mnist100_revision.py (96 + 32 images a step)"
        ),
        "ours": {
            "per_step": common.summarize(ours_times),
            "xla_flops": flops,
            "achieved_flops_per_s": achieved,
            **common.fractions(achieved, rates),
            "breakdown_median_s": breakdown,
        },
        "ours_shifted_conv_gradients": {
            "per_step": common.summarize(shifted_times),
            "speedup_of_default": statistics.median(shifted_times) / ours_s,
        },
        "ours_xla_cpu_own_flags": {
            "per_step": common.summarize(stock_times),
            "XLA_FLAGS": stock.ready.get("XLA_FLAGS", ""),
            "speedup_of_default": statistics.median(stock_times) / ours_s,
        },
        "products_floor": {
            "per_step": common.summarize(floor_times),
            "products": len(found),
            "distinct_shapes": len(products.distinct_shapes(found)),
            "flop": sum(p.flop for p in found),
            "flops_per_s": sum(p.flop for p in found) / statistics.median(floor_times),
            "shapes_batch_m_k_n_count": [tuple(p) for p in found],
        },
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "matmul": rates,
        "allocator": common.ALLOCATOR,
    }
    table = [
        common.row("revision step, exon_jax (jit, one step a call)", common.sig(ours_s), "s"),
        common.row(
            "  the same with shifted conv weight gradients (matmuls)",
            common.sig(statistics.median(shifted_times)),
            "s",
        ),
        common.row(
            "  the same with XLA:CPU's own flags (YNNPACK convolutions)",
            common.sig(statistics.median(stock_times)),
            "s",
        ),
        common.row(
            "revision step FLOPs (XLA) and rate",
            common.sig(flops / 1e9) if flops else None,
            "GFLOP",
            f"{common.sig(achieved / 1e9, 3)} GFLOP/s = "
            f"{common.sig(payload['ours']['fraction_of_fp32_matmul'], 2)} of the float32 "
            "matmul rate"
            if achieved
            else "",
        ),
        common.row(
            "  its products alone, each a bare matmul of equal work (floor)",
            common.sig(statistics.median(floor_times)),
            "s",
            f"{len(found)} products, "
            f"{common.sig(payload['products_floor']['flops_per_s'] / 1e9, 3)} GFLOP/s",
        ),
    ]
    if their_steps:
        theirs_s = statistics.median(their_steps)
        payload["official"] = {
            "per_step": common.summarize(their_steps),
            "n_short": n_short,
            "n_long": n_long,
            "driver": theirs.ready,
        }
        payload["speedup"] = theirs_s / ours_s
        payload["speedup_ceiling_of_products"] = theirs_s / statistics.median(floor_times)
        table.append(common.row("authors' step (eager TF, their train)", common.sig(theirs_s), "s"))
        table.append(
            common.row("speed-up over the authors' step", common.sig(theirs_s / ours_s, 3), "x")
        )
        table.append(
            common.row(
                "  the most the products floor allows",
                common.sig(payload["speedup_ceiling_of_products"], 3),
                "x",
            )
        )
        summary = (
            f"ours {ours_s:.3f} s/step, theirs {theirs_s:.3f} s/step: {theirs_s / ours_s:.1f}x"
        )
    else:
        payload["official"] = {"skipped": why_not, "install": common.TF_INSTALL}
        summary = f"ours {ours_s:.3f} s/step; authors' step skipped: {why_not}"
    payload["table"] = table
    common.write_json("revision_step_cifar10" if cifar else "revision_step", payload, summary)


if __name__ == "__main__":
    main()
