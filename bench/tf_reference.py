"""exon_jax's MNIST step against the TensorFlow/Keras reference, measured in one run.

The reference is ../shared/refbench/tf_keras_step.py (the paper's MNIST step in Keras 3,
GradientTape, tf.function; fixed random batch of 2 000 + 179; see its README), run in a
separate virtual environment (TensorFlow is not an exon_jax dependency), found from
--tf-python, $TFREF_PYTHON or $TFREF/bin/python; the script from --refbench,
$REFBENCH_SCRIPT or the repository layout (common.tf_reference):
`--xla --steps 60` (jit_compile=True) and `--steps 60` (plain tf.function), each a fresh
subprocess that prints steps/s after its own warm-up.
The exon_jax figures come from this process, interleaved with the TF runs:
  * "per call": one jitted train step per call (state donated, fixed real batch), the
    same code path as bench/train_step.py, float32;
  * "scanned": the compiled 28-step epoch (`experiment.place`'s), per step, float32
    and bfloat16.
Ratios are speed ratios: exon_jax steps/s / TF steps/s (> 1: exon_jax is faster).

Without the TensorFlow interpreter the JSON says "skipped" with the install command.

  TFREF=<venv> python -m bench.tf_reference [--quick] [--repeats N]
  python -m bench.tf_reference --tf-python <venv>/bin/python [--refbench <tf_keras_step.py>]
"""

from __future__ import annotations

import statistics

from bench import common

import jax

from exon_jax import experiment

TF_STEPS = 60


class JaxSteps:
    """exon_jax's per-call step and scanned epoch for the paper MNIST config."""

    def __init__(self, compute_dtype: str):
        config = common.mnist_config(compute_dtype)
        exp = experiment.build_experiment(config, common.mnist_dataset())
        placed = experiment.place(exp)  # main.py's path: the epoch compiled ahead
        self.data, self.hparams, self.states = placed.data, placed.hparams, placed.states
        self.key = experiment.epoch_key(exp.spec.data.seed, 0, exp.mesh)
        self.steps = exp.spec.settings.steps_per_epoch
        self.epoch = placed.epoch_fn
        state, self.hp1 = common.single_model(exp)
        self.batch = common.first_batch(exp, self.data)
        self.step = (
            jax.jit(
                exp.spec.train_step,
                donate_argnums=0,
            )
            .lower(state, self.hp1, self.batch)
            .compile()
        )
        self.state = state

    def one_step(self):
        self.state, m = self.step(self.state, self.hp1, self.batch)
        return self.state, m

    def one_epoch(self):
        self.states, m = self.epoch(self.states, self.hparams, self.data, self.key)
        return self.states, m

    def per_call_steps_per_s(self, reps: int) -> float:
        return 1.0 / common.timeit(self.one_step, repeats=reps, warmup=5)["median_s"]

    def scanned_steps_per_s(self, reps: int) -> float:
        return self.steps / common.timeit(self.one_epoch, repeats=reps, warmup=1)["median_s"]


def main():
    args = common.parse_args(__doc__, common.add_tf_options)
    tf_python, script, reason = common.tf_reference(args)
    if reason:
        common.write_tf_skipped("tf_reference", "TF Keras reference", reason)
        return
    rounds = common.repeats(args, full=3, quick=1)
    step_reps = 15 if args.quick else 30
    epoch_reps = 2 if args.quick else 3
    f32, bf16 = JaxSteps("float32"), JaxSteps("bfloat16")
    samples = {
        k: []
        for k in ("jax_per_call_f32", "jax_scanned_f32", "jax_scanned_bf16", "tf_xla", "tf_plain")
    }
    tf_runs = []
    for _ in range(rounds):
        samples["jax_per_call_f32"].append(f32.per_call_steps_per_s(step_reps))
        samples["jax_scanned_f32"].append(f32.scanned_steps_per_s(epoch_reps))
        samples["jax_scanned_bf16"].append(bf16.scanned_steps_per_s(epoch_reps))
        for xla in (True, False):
            out = common.run_tf(tf_python, script, TF_STEPS, xla)
            tf_runs.append(out)
            samples["tf_xla" if xla else "tf_plain"].append(out["steps_per_s"])
    med = {k: statistics.median(v) for k, v in samples.items()}
    ratios = {
        f"{j}_over_{t}": med[j] / med[t]
        for j in ("jax_per_call_f32", "jax_scanned_f32", "jax_scanned_bf16")
        for t in ("tf_xla", "tf_plain")
    }
    table = [
        common.row(
            "TF Keras + XLA (refbench), MNIST step",
            common.sig(med["tf_xla"]),
            "steps/s",
            tf_runs[0].get("version", ""),
        ),
        common.row(
            "TF Keras tf.function (refbench), MNIST step", common.sig(med["tf_plain"]), "steps/s"
        ),
        common.row(
            "exon_jax per-call step fp32 / TF+XLA",
            common.sig(ratios["jax_per_call_f32_over_tf_xla"], 3),
            "x speed",
            f"{common.sig(med['jax_per_call_f32'])} steps/s",
        ),
        common.row(
            "exon_jax scanned epoch fp32 / TF+XLA",
            common.sig(ratios["jax_scanned_f32_over_tf_xla"], 3),
            "x speed",
            f"{common.sig(med['jax_scanned_f32'])} steps/s",
        ),
        common.row(
            "exon_jax scanned epoch bf16 / TF+XLA",
            common.sig(ratios["jax_scanned_bf16_over_tf_xla"], 3),
            "x speed",
            f"{common.sig(med['jax_scanned_bf16'])} steps/s",
        ),
    ]
    summary = (
        f"TF+XLA {med['tf_xla']:.1f} steps/s, TF {med['tf_plain']:.1f}; exon_jax per-call "
        f"{med['jax_per_call_f32']:.1f} ({ratios['jax_per_call_f32_over_tf_xla']:.2f}x TF+XLA), "
        f"scanned fp32 {med['jax_scanned_f32']:.1f} ({ratios['jax_scanned_f32_over_tf_xla']:.2f}x), "
        f"scanned bf16 {med['jax_scanned_bf16']:.1f} ({ratios['jax_scanned_bf16_over_tf_xla']:.2f}x)"
    )
    common.write_json(
        "tf_reference",
        {
            "quick": args.quick,
            "rounds": rounds,
            "tf_steps_per_run": TF_STEPS,
            "tf_command": f"{tf_python} {script} [--xla] --steps {TF_STEPS}",
            "definition": "steps/s; ratios = exon_jax steps/s / TF steps/s (> 1 faster); jax and "
            "TF runs interleaved, medians over rounds",
            "steps_per_s_samples": samples,
            "steps_per_s_median": med,
            "speed_ratios": ratios,
            "tf_runs": tf_runs,
            "table": table,
        },
        summary,
    )


if __name__ == "__main__":
    main()
