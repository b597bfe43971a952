"""Where the paper MNIST step's time goes: a breakdown by part, each timed on its own.

Parts (same batch, same state, float32): the full step (gradient + RMSprop update), the
gradient alone, the loss forward alone, the optimiser update alone, the sampling noise
alone, and every dense layer's three products (forward x.W, input gradient g.W^T,
weight gradient x^T.g) at the step's batch size, each as its own jitted matmul with its
achieved GFLOP/s. Writes bench/results/profile_step.json.

  python -m bench.profile_step [--quick]
"""

import jax
import jax.numpy as jnp

from bench import common
from exon_jax import experiment, sampling


def main():
    args = common.parse_args(__doc__)
    n = common.repeats(args, full=30, quick=10)
    config = common.mnist_config()
    exp = experiment.build_experiment(config, common.mnist_dataset())
    data = experiment.device_data(exp)
    state, hparams = common.single_model(exp)
    batch = common.first_batch(exp, data)
    step_fn = exp.spec.train_step

    full = jax.jit(step_fn)
    grad_only = jax.jit(
        lambda s: jax.grad(lambda p: step_fn(s.replace(params=p), hparams, batch)[1]["loss"])(
            s.params
        )
    )
    # The step's loss as a function of params (forward only, no update).
    loss_only = jax.jit(lambda s: step_fn(s, hparams, batch)[1]["loss"])
    grads = grad_only(state)
    update_only = jax.jit(lambda s, g: exp.spec.optimizer.update(g, s.opt_state, s.params))
    batch_size = batch[0].shape[0]
    logits = jnp.zeros((batch_size, 10))
    mean = jnp.zeros((batch_size, 10, 2))
    noise_only = jax.jit(lambda key: sampling.sample_latent(key, logits, mean, mean))

    parts = {
        "full step (grad + update)": common.timeit(lambda: full(state, hparams, batch), n),
        "gradient of the loss": common.timeit(lambda: grad_only(state), n),
        "loss forward only": common.timeit(lambda: loss_only(state), n),
        "RMSprop update only": common.timeit(lambda: update_only(state, grads), n),
        "Gumbel + Gaussian noise and z": common.timeit(lambda: noise_only(jax.random.key(0)), n),
    }
    layers = [
        ("enc 784->200", 784, 200),
        ("enc 200->400", 200, 400),
        ("enc head 400->50", 400, 50),
        ("dec 2->200", 2, 200),
        ("dec 200->400", 200, 400),
        ("dec 400->784", 400, 784),
    ]
    products = {}
    key = jax.random.key(1)
    for name, fan_in, fan_out in layers:
        x = jax.random.normal(key, (batch_size, fan_in))
        w = jax.random.normal(key, (fan_in, fan_out))
        g = jax.random.normal(key, (batch_size, fan_out))
        flop = 2.0 * batch_size * fan_in * fan_out
        for kind, fn, operands in (
            ("forward x.W", jax.jit(jnp.matmul), (x, w)),
            ("input grad g.W^T", jax.jit(lambda a, b: a @ b.T), (g, w)),
            ("weight grad x^T.g", jax.jit(lambda a, b: a.T @ b), (x, g)),
        ):
            stats = common.timeit(lambda: fn(*operands), n)
            products[f"{name}: {kind}"] = {**stats, "gflop_per_s": flop / stats["median_s"] / 1e9}
    matmul_total = sum(p["median_s"] for p in products.values())
    rows = [
        common.row(
            f"MNIST step part: {k}",
            common.sig(v["median_s"] * 1e3),
            "ms",
            f"min {common.sig(v['min_s'] * 1e3)}",
        )
        for k, v in parts.items()
    ]
    rows.append(
        common.row(
            "MNIST step: the 18 dense products timed one by one, summed",
            common.sig(matmul_total * 1e3),
            "ms",
            "hottest: "
            + ", ".join(
                f"{k} {common.sig(v['median_s'] * 1e3)} ms"
                for k, v in sorted(products.items(), key=lambda kv: -kv[1]["median_s"])[:3]
            ),
        )
    )
    summary = (
        f"full step {parts['full step (grad + update)']['median_s'] * 1e3:.1f} ms; "
        f"dense products alone {matmul_total * 1e3:.1f} ms; "
        f"update {parts['RMSprop update only']['median_s'] * 1e3:.2f} ms; "
        f"noise {parts['Gumbel + Gaussian noise and z']['median_s'] * 1e3:.2f} ms"
    )
    common.write_json(
        "profile_step",
        {
            "parts": parts,
            "dense_products": products,
            "dense_products_total_s": matmul_total,
            "table": rows,
        },
        summary,
    )


if __name__ == "__main__":
    main()
