"""The command line's one-line failures: every error type exon_jax raises for a run's expected
faults is an `ExpectedError`, and `exon_jax.errors` imports nothing else of exon_jax."""

import subprocess
import sys

import pytest

from exon_jax import errors
from exon_jax.ops.checkpoints import CheckpointError, NonFiniteStateError
from exon_jax.configuration import ConfigError
from exon_jax.data import DataError
from exon_jax.parallel import ProcessMismatch
from exon_jax.priors import PriorError
from exon_jax.ops.run_record import DataMismatch
from exon_jax.training import TrainingDiverged
from exon_jax.ops.workdir_lock import WorkdirBusyError


@pytest.mark.parametrize(
    "error_type, builtin",
    [
        (ConfigError, ValueError),
        (DataError, ValueError),
        (PriorError, ValueError),
        (DataMismatch, ValueError),
        (ProcessMismatch, ValueError),
        (CheckpointError, RuntimeError),
        (NonFiniteStateError, RuntimeError),
        (TrainingDiverged, RuntimeError),
        (WorkdirBusyError, RuntimeError),
    ],
)
def test_run_faults_are_expected_and_keep_their_builtin_base(error_type, builtin):
    error = error_type("one line")
    assert isinstance(error, errors.EXPECTED_ERRORS)
    assert isinstance(error, builtin)  # callers catching ValueError / RuntimeError still do


@pytest.mark.parametrize("error", [MemoryError(), OSError(28, "No space left on device")])
def test_memory_and_disk_are_expected(error):
    assert isinstance(error, errors.EXPECTED_ERRORS)


def test_programming_errors_are_not_expected():
    for error in (TypeError("x"), KeyError("x"), ValueError("x"), RuntimeError("x")):
        assert not isinstance(error, errors.EXPECTED_ERRORS)


def test_errors_module_imports_nothing_of_exon_jax():
    code = (
        "import sys; import exon_jax.errors; "
        "print(sorted(m for m in sys.modules if m.startswith('exon_jax.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # The package's __init__ sets XLA:CPU's flags (exon_jax.ops.xla_flags: os and sys only).
    expected = ["exon_jax.errors", "exon_jax.ops", "exon_jax.ops.xla_flags"]
    assert out.stdout.strip() == str(expected), out.stdout
