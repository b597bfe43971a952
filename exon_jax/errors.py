"""The failures a run is expected to meet, each reported by `main.py` as one line.

Each module keeps its own error type next to the code that raises it; this tuple
gathers them for the command line (config, data, prior, checkpoint, disk,
divergence, memory, a busy workdir, processes that disagree).
"""

from exon_jax.checkpoints import CheckpointError
from exon_jax.configuration import ConfigError
from exon_jax.data import DataError
from exon_jax.parallel import ProcessMismatch
from exon_jax.run_record import DataMismatch
from exon_jax.training import TrainingDiverged
from exon_jax.priors import PriorError
from exon_jax.workdir_lock import WorkdirBusyError

EXPECTED_ERRORS = (
    ConfigError,
    DataError,
    PriorError,
    CheckpointError,
    DataMismatch,
    ProcessMismatch,
    TrainingDiverged,
    WorkdirBusyError,
    MemoryError,
    OSError,
)
