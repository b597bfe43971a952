"""exon_jax.ops.xla_flags: XLA:CPU's convolutions taken out of YNNPACK before the backend starts."""

import subprocess
import sys

import numpy as np

from exon_jax.ops import xla_flags

FLAG = xla_flags.CPU_FLAGS[0]


def test_apply_appends_the_flag_to_the_users_flags():
    environ = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    done = xla_flags.apply(environ, backend_started=lambda: False)
    assert done["applied"] == [FLAG]
    assert environ["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=2 {FLAG}"
    environ = {}
    xla_flags.apply(environ, backend_started=lambda: False)
    assert environ["XLA_FLAGS"] == FLAG


def test_apply_leaves_a_users_own_setting_a_started_backend_and_the_opt_out():
    own = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=+reduce"}
    assert xla_flags.apply(own, backend_started=lambda: False)["applied"] == []
    assert own["XLA_FLAGS"] == "--xla_cpu_experimental_ynn_fusion_type=+reduce"
    for environ, started in (({}, True), ({"EXON_XLA_CPU_TUNING": "0"}, False)):
        assert xla_flags.apply(environ, backend_started=lambda s=started: s)["applied"] == []
        assert "XLA_FLAGS" not in environ


def test_importing_exon_jax_imports_no_jax():
    code = "import sys, exon_jax; print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_without_takes_out_only_exon_jax_flags():
    flags = f"--xla_force_host_platform_device_count=2 {FLAG}"
    assert xla_flags.without(flags) == "--xla_force_host_platform_device_count=2"
    assert xla_flags.without("") == ""


_PROBE = """
import jax, jax.numpy as jnp, numpy as np
import exon_jax
x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 14, 14, 32)), jnp.float32)
k = jnp.asarray(np.random.default_rng(1).normal(size=(3, 3, 32, 64)), jnp.float32)
conv = lambda k: jax.lax.conv_general_dilated(x, k, (1, 1), 'SAME',
                                              dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
grad = jax.jit(jax.grad(lambda k: jnp.sum(conv(k) ** 2)))
print('ynn' if 'ynn_fusion' in grad.lower(k).compile().as_text() else 'eigen')
np.save(sys.argv[1], np.asarray(grad(k)))
"""


def test_importing_exon_jax_moves_convolutions_out_of_ynnpack(tmp_path):
    """In a fresh process, `import exon_jax` before the first computation: the compiled
    kernel gradient of a 32 -> 64 3x3 layer (the revision classifier's) holds no YNN fusion, and it equals the one XLA's YNN path computes
    (EXON_XLA_CPU_TUNING=0) and a NumPy oracle: d/dk sum(y^2) = sum_x x_shift^T 2y."""
    seen = {}
    for tuning in ("1", "0"):
        out = tmp_path / f"grad_{tuning}.npy"
        result = subprocess.run(
            [sys.executable, "-c", "import sys\n" + _PROBE, str(out)],
            capture_output=True,
            text=True,
            env={"EXON_XLA_CPU_TUNING": tuning, "JAX_PLATFORMS": "cpu", "PATH": ""},
            check=True,
        )
        seen[tuning] = (result.stdout.split()[-1], np.load(out))
    assert seen["1"][0] == "eigen" and seen["0"][0] == "ynn"
    x = np.random.default_rng(0).normal(size=(2, 14, 14, 32))
    k = np.random.default_rng(1).normal(size=(3, 3, 32, 64))
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    y = sum(
        np.einsum("bhwc,co->bhwo", xp[:, i : i + 14, j : j + 14], k[i, j])
        for i in range(3)
        for j in range(3)
    )
    oracle = np.stack(
        [
            np.stack(
                [np.einsum("bhwc,bhwo->co", xp[:, i : i + 14, j : j + 14], 2 * y) for j in range(3)]
            )
            for i in range(3)
        ]
    )
    for _, grad in seen.values():
        np.testing.assert_allclose(grad, oracle, rtol=1e-4, atol=1e-3)
