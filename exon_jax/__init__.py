"""exon_jax: EXoN, a semi-supervised VAE whose latent space is designed in advance."""

import os as _os
import re as _re

from exon_jax.ops import xla_flags as _xla_flags

_xla_flags.apply()  # XLA:CPU's flags are read when the first backend starts


def _version() -> str:
    """pyproject.toml's version in a source checkout, else the installed distribution's."""
    pyproject = _os.path.join(_os.path.dirname(_os.path.dirname(__file__)), "pyproject.toml")
    try:
        with open(pyproject) as f:
            match = _re.search(r'^version\s*=\s*"([^"]+)"', f.read(), _re.MULTILINE)
        if match:
            return match.group(1)
    except OSError:
        pass
    from importlib import metadata

    try:
        return metadata.version("exon_jax")
    except metadata.PackageNotFoundError:
        return "unknown"


__version__ = _version()


def load_run(workdir: str, point=None, which: str = "latest"):
    """A trained run from its workdir (see `exon_jax.api.load_run`); which="best" for the
    best-on-validation checkpoint (train.keep_best)."""
    from exon_jax.api import load_run as _load_run

    return _load_run(workdir, point, which)


def run(config, workdir: str, dataset=None, progress: bool = True):
    """Trains `config` in `workdir` (resuming), writes results, figures and timings: what
    `main.py --mode=train` does (see `exon_jax.workflow.train`)."""
    from exon_jax.workflow import train as _train

    return _train(config, workdir, dataset, progress)


def evaluate(workdir: str, overrides=None, dataset=None, progress: bool = True):
    """`main.py --mode=evaluate` (see `exon_jax.workflow.evaluate`)."""
    from exon_jax.workflow import evaluate as _evaluate

    return _evaluate(workdir, overrides, dataset, progress)


def analyze(workdir: str, overrides=None, dataset=None, progress: bool = True):
    """`main.py --mode=analyze` (see `exon_jax.workflow.analyze`)."""
    from exon_jax.workflow import analyze as _analyze

    return _analyze(workdir, overrides, dataset, progress)


def embed(workdir: str, overrides=None, dataset=None, progress: bool = True):
    """`main.py --mode=embed`: the test set's codes in <workdir>/codes.npz (see
    `exon_jax.workflow.embed`)."""
    from exon_jax.workflow import embed as _embed

    return _embed(workdir, overrides, dataset, progress)
