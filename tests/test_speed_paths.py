"""The fast dense-product paths keep the maths exact, and the benchmark tables stay honest.

* `models.dense` in every weight-gradient layout: forward and gradients (kernel, bias,
  input) equal flax nn.Dense / jax.grad in float32 to a tight tolerance (only the
  summation order inside a matmul kernel may differ), also for N-D inputs, under vmap
  (the sweep's model axis) and for the whole MNIST train step.
* bench/run_all.py never mixes machines in one table and refuses misfiled results;
  bench/common.py finds the TensorFlow reference from options, environment or the
  repository layout, not from a path of one machine.
"""

from __future__ import annotations

import json
import os
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from exon_jax import models

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def assert_close(actual, desired, rtol=1e-5, scale_tol=1e-6):
    """float32-tight: relative 1e-5 per element, absolute 1e-6 of the array's largest
    magnitude (a sum of many terms has absolute, not relative, rounding error)."""
    desired = np.asarray(desired)
    np.testing.assert_allclose(
        actual, desired, rtol=rtol, atol=scale_tol * max(float(np.abs(desired).max()), 1e-30)
    )


def _loss(module):
    def loss(variables, x):
        y = module.apply(variables, x)
        return jnp.sum(jnp.sin(y) * jnp.arange(y.shape[-1], dtype=y.dtype))

    return loss


@pytest.mark.parametrize("name", models.WEIGHT_GRADIENT_LAYOUTS)
@pytest.mark.parametrize("shape", [(61, 37), (3, 19, 37)])
def test_dense_matches_flax_dense(name, shape):
    x = jax.random.normal(jax.random.key(0), shape)
    reference = nn.Dense(23, kernel_init=nn.initializers.glorot_uniform())
    variables = reference.init(jax.random.key(1), x)
    variables = jax.tree.map(lambda v: v + 0.1, variables)  # non-zero bias
    module = models.dense(23, layout=name)
    fast_y = jax.jit(module.apply)(variables, x)
    fast_g = jax.jit(jax.grad(_loss(module), argnums=(0, 1)))(variables, x)
    assert_close(fast_y, reference.apply(variables, x))
    ref_g = jax.grad(_loss(reference), argnums=(0, 1))(variables, x)
    for a, b in zip(jax.tree.leaves(fast_g), jax.tree.leaves(ref_g)):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert_close(a, b)


@pytest.mark.parametrize("name", ["transpose_x", "transpose_g", "smaller"])
def test_dense_under_vmap_matches_flax_dense(name):
    """A sweep vmaps the step over a model axis: stacked kernels, shared or stacked inputs."""
    x = jax.random.normal(jax.random.key(2), (41, 29))
    reference = nn.Dense(17)
    stacked = jax.vmap(lambda k: reference.init(k, x))(jax.random.split(jax.random.key(3), 4))
    xs = x[None] * jnp.arange(1.0, 5.0)[:, None, None]
    module = models.dense(17, layout=name)
    fast = jax.jit(jax.vmap(jax.grad(_loss(module), argnums=(0, 1)), in_axes=(0, None)))(stacked, x)
    fast_b = jax.jit(jax.vmap(jax.grad(_loss(module), argnums=(0, 1))))(stacked, xs)
    ref = jax.vmap(jax.grad(_loss(reference), argnums=(0, 1)), in_axes=(0, None))(stacked, x)
    ref_b = jax.vmap(jax.grad(_loss(reference), argnums=(0, 1)))(stacked, xs)
    for a, b in zip(jax.tree.leaves((fast, fast_b)), jax.tree.leaves((ref, ref_b))):
        assert_close(a, b)


def test_bfloat16_dense_gradients_are_float32_products_of_the_rounded_operands():
    """bfloat16 mode: bf16 operands and float32 accumulation in the forward; the gradient
    products are float32 products of the float32 cotangent with the bf16-rounded x and W
    (straight through the rounding). jax.grad of the stock bf16 product computes the same
    but rounds both gradients to bfloat16 (the cotangent of a bf16 operand is bf16):
    within bf16 rounding of ours."""
    x = jax.random.normal(jax.random.key(4), (53, 31))
    variables = nn.Dense(11).init(jax.random.key(5), x)
    p = variables["params"]
    bf = lambda a: a.astype(jnp.bfloat16).astype(jnp.float32)  # noqa: E731
    y = jnp.dot(bf(x), bf(p["kernel"]), precision="highest") + p["bias"]
    g = jnp.cos(y) * jnp.arange(11, dtype=jnp.float32)  # d loss / d y of _loss
    expected = {
        "bias": g.sum(0),
        "kernel": jnp.dot(bf(x).T, g, precision="highest"),
        "x": jnp.dot(g, bf(p["kernel"]).T, precision="highest"),
    }
    results = {}
    for name in ("xla", "smaller"):
        module = models.dense(11, jnp.bfloat16, layout=name)
        out = jax.jit(module.apply)(variables, x)
        grads, dx = jax.jit(jax.grad(_loss(module), argnums=(0, 1)))(variables, x)
        results[name] = {"y": out, "x": dx, **grads["params"]}
    fast, stock = results["smaller"], results["xla"]
    assert_close(fast["y"], y)
    for name, value in expected.items():
        assert fast[name].dtype == jnp.float32
        assert_close(fast[name], value)
        np.testing.assert_allclose(
            stock[name], value, rtol=2e-2, atol=1e-2 * float(jnp.abs(value).max())
        )


def test_layout_changes_only_the_gradient_program():
    module = models.dense(5, layout="transpose_x")
    x = jnp.ones((7, 3))
    variables = module.init(jax.random.key(0), x)
    text = jax.jit(jax.grad(_loss(module))).lower(variables, x).as_text()
    assert "optimization_barrier" in text
    assert set(variables["params"]) == {"kernel", "bias"}


def test_unknown_layout_and_unsupported_product_are_refused():
    with pytest.raises(ValueError, match="layout must be one of"):
        models.dense(5, layout="fast")
    with pytest.raises(ValueError, match="nn.Dense"):
        models._layout_dot_general(
            jnp.ones((2, 3)),
            jnp.ones((2, 4)),
            (((0,), (0,)), ((), ())),
            compute_dtype=None,
            layout="transpose_x",
        )


def test_train_step_gradients_match_stock_layout():
    """The whole MNIST-style step (encoder, sampling, decoder, EXoN loss): same loss and
    same updated parameters with the fast layout as with XLA's stock gradient."""
    import optax
    from exon_jax import priors, train

    settings = train.TrainSettings(
        batch_unlabelled=24, batch_labelled=8, num_unlabelled=24, num_labelled=8, beta_mode="fixed"
    )
    prior = priors.circle_prior(num_classes=10, variance=4.0)
    hparams = train.HParams(
        lambda1=jnp.float32(100.0),
        lambda2=jnp.float32(1.1),
        epsilon=jnp.float32(0.0),
        beta=jnp.float32(1.1),
        prior=prior,
    )
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(size=(32, 12, 12, 1)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 10, size=32), jnp.int32)
    labelled = jnp.arange(32) >= 24

    def model(layout):
        return models.EXoNModel(
            models.MLPEncoder(hidden=(24, 40), dense_layout=layout),
            models.MLPDecoder((12, 12, 1), hidden=(24, 40), dense_layout=layout),
        )

    optimizer = optax.rmsprop(1e-3, decay=0.9, eps=1e-7)
    state = jax.jit(
        lambda key: train.create_train_state(
            key, model("xla"), optimizer, hparams, settings, (12, 12, 1)
        )
    )(jax.random.key(0))
    out = {}
    for name in ("xla", "smaller"):  # "smaller" uses both transposes in this network
        step = jax.jit(train.make_train_step(model(name), optimizer, settings))
        out[name] = step(state, hparams, (x, labels, labelled))
    base_state, base_metrics = out["xla"]
    for name, (state, metrics) in out.items():
        np.testing.assert_allclose(metrics["loss"], base_metrics["loss"], rtol=1e-6)
        for a, b in zip(jax.tree.leaves(state.opt_state), jax.tree.leaves(base_state.opt_state)):
            if jnp.issubdtype(jnp.asarray(b).dtype, jnp.floating):
                assert_close(a, b, rtol=1e-4)  # RMSprop's nu: squared gradients
        for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(base_state.params)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ benchmark tables


@pytest.fixture()
def bench_modules():
    from bench import common, run_all

    return common, run_all


def _result(common, machine: dict, name: str, value) -> dict:
    machine = dict(machine, machine_id=common.machine_id(machine))
    return {
        "benchmark": name,
        "machine": machine,
        "quick": True,
        "table": [common.row(f"{name} figure", value, "ms", "")],
    }


@pytest.mark.slow  # bench bookkeeping (infrastructure)
def test_table_never_mixes_machines(bench_modules, tmp_path, monkeypatch):
    common, run_all = bench_modules
    base = {
        "cpu_count": 2,
        "ram_gib": 8.0,
        "jax": "0",
        "jaxlib": "0",
        "devices": ["cpu:0"],
        "cpu_flags": ["avx2"],
        "date_utc": "2026-01-01T00:00:00Z",
        "loadavg_1_5_15_at_start": [1.0, 1.0, 1.0],
    }
    zen4 = dict(
        base, cpu_model="AMD EPYC", cpu_vendor="AuthenticAMD", cpu_family=25, cpu_model_number=17
    )
    zen5 = dict(
        base,
        cpu_model="AMD EPYC",
        cpu_vendor="AuthenticAMD",
        cpu_family=26,
        cpu_model_number=2,
        date_utc="2026-02-01T00:00:00Z",
    )
    id4, id5 = common.machine_id(zen4), common.machine_id(zen5)
    assert id4 != id5 and id4.startswith("amd-epyc-f25m17-2c-")
    files = {
        (id4, "train_step"): _result(common, zen4, "train_step", 1.0),
        (id5, "train_step"): _result(common, zen5, "train_step", 2.0),
        (id5, "epoch"): _result(common, zen5, "epoch", 3.0),
        (id4, "epoch"): _result(common, zen5, "epoch", 4.0),
    }  # misfiled
    for (folder, name), doc in files.items():
        (tmp_path / folder).mkdir(exist_ok=True)
        (tmp_path / folder / f"{name}.json").write_text(json.dumps(doc))
    (tmp_path / "sweep.json").write_text(json.dumps(_result(common, zen4, "sweep", 5.0)))
    monkeypatch.setattr(run_all, "RESULTS_DIR", str(tmp_path))

    text = run_all.build_table(["train_step", "epoch", "sweep"], current=id4)
    tables = text.split("Machine `")[1:]
    assert [t.split("`")[0] for t in tables] == [id4, id5]  # current machine first
    for machine, table in zip((id4, id5), tables):
        rows = [l for l in table.splitlines() if l.startswith("| ") and "---" not in l][1:]
        assert rows and all(r.startswith(f"| {machine} |") for r in rows)
    assert "| 4.0 |" not in text and "| 5.0 |" not in text
    assert f"{id4}/epoch.json: measured on {id5}" in text
    assert "bench/results/sweep.json: not in a machine folder" in text
    only = run_all.build_table(["train_step", "epoch"], only_machine=id5, current=id4)
    assert only.count("Machine `") == 1 and f"Machine `{id5}`" in only and "| 3.0 |" in only
    assert f"| {id4} |" not in only


@pytest.mark.slow  # bench bookkeeping (infrastructure)
def test_tf_reference_found_from_options_environment_or_layout(
    bench_modules, tmp_path, monkeypatch
):
    common, _ = bench_modules
    for var in ("TFREF", "TFREF_PYTHON", "REFBENCH_SCRIPT"):
        monkeypatch.delenv(var, raising=False)
    script = tmp_path / "tf_keras_step.py"
    script.write_text("")
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("")
    args = types.SimpleNamespace(tf_python=None, refbench=str(script))
    assert common.tf_reference(args)[2].startswith("no TensorFlow reference interpreter")
    monkeypatch.setenv("TFREF", str(tmp_path / "venv"))
    assert common.tf_reference(args) == (str(python), str(script), None)
    monkeypatch.delenv("TFREF")
    args = types.SimpleNamespace(tf_python=str(python), refbench=None)
    monkeypatch.setenv("REFBENCH_SCRIPT", str(script))
    assert common.tf_reference(args)[1:] == (str(script), None)
    monkeypatch.delenv("REFBENCH_SCRIPT")
    layout_script = os.path.abspath(
        os.path.join(REPO, "..", "shared", "refbench", "tf_keras_step.py")
    )
    assert common.tf_reference(args)[1] in (layout_script, None)
    for name in os.listdir(os.path.join(REPO, "bench")):
        if name.endswith(".py"):
            with open(os.path.join(REPO, "bench", name)) as f:
                source = f.read()
            assert "/tmp/" not in source and "/work/" not in source, name


def test_overhead_figure_format_replaces_only_the_pdf_flag():
    """bench/overhead.py times figures with and without PDF on one restored, frozen
    experiment: the variant must differ from it in `analysis.pdf` only (setting the
    field on the frozen experiment raised FrozenInstanceError)."""
    import dataclasses

    from bench.overhead import with_figure_format
    from exon_jax import experiment
    from tests.synthetic import small_mnist_config, synthetic_mnist

    config = small_mnist_config(labelled_per_class=10)
    config.train.batch_unlabelled, config.train.batch_labelled = 100, 20
    exp = experiment.build_experiment(config, synthetic_mnist(num_train=600, num_test=50))
    for pdf in (True, False):
        variant = with_figure_format(exp, pdf)
        assert variant.analysis.pdf is pdf and variant.spec.analysis.pdf is pdf
        assert dataclasses.replace(variant.spec.analysis, pdf=exp.analysis.pdf) == exp.analysis
        assert variant.data is exp.data and variant.mesh is exp.mesh
        assert all(
            getattr(variant.spec, f.name) is getattr(exp.spec, f.name)
            for f in dataclasses.fields(exp.spec)
            if f.name != "analysis"
        )


def test_official_driver_names_the_packages_their_code_lacks(tmp_path):
    """The authors' step runs in another venv: a package their modules import but that venv
    lacks is named in one line with its pip command (it ended silently before, and the
    benchmark said only that the driver 'ended before answering')."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = (
        "import importlib.util, sys\n"
        "real = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda m, *a: None if m in ('tqdm', 'tf_keras') else real(m, *a)\n"
        f"sys.argv = ['official_driver.py', '--official', {str(tmp_path)!r}, '--dataset', 'cifar10']\n"
        "import runpy\n"
        f"runpy.run_path({os.path.join(root, 'bench', 'official_driver.py')!r}, run_name='__main__')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: their code needs tqdm, tf_keras in this venv (")
    assert lines[0].endswith("pip install tqdm tf_keras")


def test_products_floor_counts_each_convolution_and_its_gradients_in_closed_form():
    """bench/products.py: a SAME 3x3 convolution of [B, H, W, C] to O features does
    2 B H W 9 C O FLOP forward, and as much again for each gradient (input and kernel);
    einsum 'bn,knd->bkd' does 2 B K n d however JAX lays it out; a batched matmul keeps its
    batch; a scan's body counts `length` times; equal shapes are timed once with their
    occurrences summed (floor_seconds itself only runs here: its times are the bench's)."""
    from bench import products

    b, h, w, c, o = 4, 8, 6, 3, 5
    x = jnp.ones((b, h, w, c))
    kernel = jnp.ones((3, 3, c, o))

    def conv_sum(x, kernel):
        dims = ("NHWC", "HWIO", "NHWC")
        return jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=dims).sum()

    closed_form = 2.0 * b * h * w * 9 * c * o
    found = products.matmul_shapes(jax.grad(conv_sum, argnums=(0, 1)), x, kernel)
    assert [p.flop for p in found] == [closed_form] * 3
    assert products.matmul_shapes(jax.grad(conv_sum, argnums=1), x, kernel)[1].m == 9 * c

    heads = jnp.ones((10, 7, 2))
    found = products.matmul_shapes(
        lambda a, k: jnp.einsum("bn,knd->bkd", a, k), jnp.ones((b, 7)), heads
    )
    assert sum(p.flop for p in found) == 2.0 * b * 10 * 7 * 2
    found = products.matmul_shapes(jnp.matmul, jnp.ones((10, b, 7)), heads)
    assert [(p.batch, p.m, p.k, p.n) for p in found] == [(10, b, 7, 2)]

    def scanned(a, m):
        return jax.lax.scan(lambda carry, _: (carry @ m, None), a, None, length=6)[0]

    found = products.matmul_shapes(scanned, jnp.ones((b, 7)), jnp.ones((7, 7)))
    assert [p.occurrences for p in found] == [6] and found[0].flop == 6 * 2.0 * b * 7 * 7

    shapes = [products.Product(1, 3, 4, 5), products.Product(2, 2, 3, 1, occurrences=2)]
    shapes.append(products.Product(1, 3, 4, 5))
    assert products.distinct_shapes(shapes) == {(1, 3, 4, 5): 2, (2, 2, 3, 1): 2}
    assert products.floor_seconds(shapes, repeats=1) > 0.0
