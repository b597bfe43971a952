"""EXoN training, evaluation and analysis from the command line.

  python main.py                                       # the paper's MNIST run (configs/mnist.py)
  python main.py --config=configs/mnist.py --config.train.epochs=5 --workdir=workdirs/quick
  python main.py --workdir=workdirs/mnist --config.train.epochs=300   # resume, stored config
  python main.py --mode=evaluate --workdir=workdirs/mnist    # restore, rewrite results.json
  python main.py --mode=evaluate --workdir=workdirs/mnist --config.data.max_test=100
                                          # -> results_data.max_test=100.json, not results.json
  python main.py --mode=analyze --workdir=workdirs/mnist     # restore, rewrite figures/
  python main.py --mode=embed --workdir=workdirs/mnist       # test-set codes, codes.npz

From Python the same calls are `exon_jax.run(config, workdir)`, `exon_jax.evaluate(workdir)`
and `exon_jax.analyze(workdir)` (`exon_jax.workflow`); this file reads the flags, and
`exon_jax.cli` starts the processes and turns failures into one line and an exit status.

`--mode=train` draws the run's figures after training unless `config.analysis.figures`
is off. Without `--config`, a workdir that holds a run resumes with the config stored there;
`--config.<field>` may then set run options and train.epochs only. evaluate / analyze use the config the run was trained with; `--config.<field>`
may override run options only (analysis.*, data.max_test, ...). An expected failure
(config, data, checkpoint, disk, divergence, memory, a busy workdir) prints one line and
exits with status 1; `--debug` shows the traceback, which is also kept in
<workdir>/error.log.

Preemption: SIGTERM (what SLURM and Kubernetes send before taking a machine back) or
SIGINT (Ctrl-C) during training finishes the current epoch, saves a checkpoint (every
process of a multi-process run stops at the same epoch), prints one line naming the
epoch, the checkpoint and the command that resumes, and exits with status 75
(EX_TEMPFAIL). A second signal exits at once (status 128 + the signal's number).

Compiled programs are kept in a persistent cache (`--compilation_cache`, default
~/.cache/exon_jax/xla; `JAX_COMPILATION_CACHE_DIR` wins when set), so a second run of the
same program skips XLA compilation. Each training run writes <workdir>/timings.json: the
wall-clock seconds of start-up, setup, compilation, training, evaluation, logging,
checkpoints and figures.

Several processes (jax.distributed): give each `--coordinator_address`, `--num_processes`
and `--process_id`, or `--distributed` alone to use JAX's cluster auto-detection (SLURM,
Open MPI, Kubernetes / Cloud TPU).
"""

import os
import sys

from absl import app, flags
from ml_collections import config_flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

_DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "mnist.py")
_CONFIG = config_flags.DEFINE_config_file(
    "config",
    _DEFAULT_CONFIG,
    "Experiment config file (a python file with get_config()).",
    lock_config=True,
)
_WORKDIR = flags.DEFINE_string(
    "workdir", "workdirs/mnist", "Directory for checkpoints, metrics, results and figures."
)
_MODE = flags.DEFINE_enum(
    "mode",
    "train",
    ["train", "evaluate", "analyze", "embed"],
    "train (resumes from workdir); evaluate, analyze or embed (test-set codes) a checkpoint.",
)
_DEBUG = flags.DEFINE_bool("debug", False, "Show the full traceback of a failure.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed",
    False,
    "Call jax.distributed.initialize() (cluster auto-detection unless the flags below are given).",
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0, for jax.distributed."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
_CACHE = flags.DEFINE_string(
    "compilation_cache",
    os.path.join(os.path.expanduser("~"), ".cache", "exon_jax", "xla"),
    "Directory of JAX's persistent compilation cache ('' = off).",
)
_HEARTBEAT = flags.DEFINE_integer(
    "heartbeat_timeout",
    60,
    "Seconds after which the other processes stop when one process has died.",
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from exon_jax import cli

    cli.main(
        cli.Command(
            mode=_MODE.value,
            workdir=_WORKDIR.value,
            config=_CONFIG.value,
            config_given=flags.FLAGS["config"].present,
            overrides=dict(config_flags.get_override_values(flags.FLAGS["config"])),
            debug=_DEBUG.value,
            distributed=_DISTRIBUTED.value,
            coordinator_address=_COORDINATOR.value,
            num_processes=_NUM_PROCESSES.value,
            process_id=_PROCESS_ID.value,
            heartbeat_timeout=_HEARTBEAT.value,
            compilation_cache=_CACHE.value,
            argv=(sys.executable, *sys.argv),
        )
    )


def _parse_flags(argv):
    from exon_jax import cli

    return cli.parse_flags(flags.FLAGS, argv, _DEFAULT_CONFIG)


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)
