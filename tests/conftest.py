"""Shared pytest setup: CPU, quiet TF logs, and a persistent XLA compilation cache.

Many tests compile the same small programs (same config, same shapes); the cache
under .pytest_cache lets later tests and later runs reuse them.
"""

import os

import exon_jax  # noqa: F401 - sets XLA:CPU flags (exon_jax.ops.xla_flags) before jax starts

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402

_CACHE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".pytest_cache", "xla"
)
jax.config.update("jax_compilation_cache_dir", _CACHE)
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE)  # main.py run as a subprocess
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
