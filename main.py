"""EXoN training, evaluation and analysis from the command line.

  python main.py                                       # the paper's MNIST run (configs/mnist.py)
  python main.py --config=configs/mnist.py --config.train.epochs=5 --workdir=workdirs/quick
  python main.py --workdir=workdirs/mnist --config.train.epochs=300   # resume, stored config
  python main.py --mode=evaluate --workdir=workdirs/mnist    # restore, rewrite results.json
  python main.py --mode=evaluate --workdir=workdirs/mnist --config.data.max_test=100
                                          # -> results_data.max_test=100.json, not results.json
  python main.py --mode=analyze --workdir=workdirs/mnist     # restore, rewrite figures/

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

import contextlib
import os
import shlex
import sys
import traceback

from absl import app, flags, logging
from ml_collections import config_flags

from exon_jax import host_allocator

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
host_allocator.tune()  # before XLA allocates: freed buffers' pages are reused, not re-faulted

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
    ["train", "evaluate", "analyze"],
    "train (resumes from workdir), evaluate or analyze a checkpoint.",
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


class _SetupError(Exception):
    """A command-line setting that cannot work, reported in one line."""


def _initialize_distributed() -> None:
    """jax.distributed from the three flags, or from the cluster (--distributed).

    Raises:
      _SetupError: some of the three flags without the others (outside --distributed), or
        a failed initialisation (e.g. --distributed where no cluster is detected).
    """
    explicit = {
        "coordinator_address": _COORDINATOR.value,
        "num_processes": _NUM_PROCESSES.value,
        "process_id": _PROCESS_ID.value,
    }
    given = {k: v for k, v in explicit.items() if v is not None}
    auto = _DISTRIBUTED.value or bool(os.environ.get("EXON_DISTRIBUTED"))
    if given and len(given) < len(explicit) and not auto:
        missing = " and ".join(f"--{k}" for k in explicit if k not in given)
        raise _SetupError(
            f"{' '.join(f'--{k}={v}' for k, v in given.items())} needs {missing} too "
            "(or --distributed inside a cluster, which detects them)"
        )
    if given or auto:
        import jax

        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU processes only
        try:
            jax.distributed.initialize(**given, heartbeat_timeout_seconds=_HEARTBEAT.value)
        except (ValueError, RuntimeError) as error:
            how = (
                " (no cluster detected: outside SLURM, Open MPI or Kubernetes give "
                "--coordinator_address, --num_processes and --process_id)"
                if auto and len(given) < len(explicit)
                else ""
            )
            reason = " ".join(str(error).split())[:300]
            raise _SetupError(f"jax.distributed cannot start: {reason}{how}") from error


def _use_compilation_cache() -> None:
    """JAX's persistent compilation cache in --compilation_cache (every program, however
    quick to compile), unless JAX_COMPILATION_CACHE_DIR already names one."""
    import jax

    if _CACHE.value and not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        jax.config.update("jax_compilation_cache_dir", _CACHE.value)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def _print_results(results, tag: str = "") -> None:
    for model in results["models"]:
        line = (
            f"{model['name']}: test error {model['classification_error']:.4f}, "
            f"KL {model['kl']:.3f}, negative SSIM {model['negative_ssim']:.4f}, "
            f"max centre distance {model['max_centre_distance_sd']:.2f} sd, "
            f"beta {model['beta']:.4g}"
        )
        if "validation_error" in model:
            line += f", validation error {model['validation_error']:.4f}"
        print(line)
    name = f"results_{tag}.json" if tag else "results.json"
    size = f" (test set of {results['test_size']})" if "test_size" in results else ""
    print(f"results{size} in {os.path.join(_WORKDIR.value, name)}")


def _train_config(workdir: str):
    """--config's config; without --config, a workdir that holds a run resumes with the
    config it stored (config.json, or its newest checkpoint's), with --config.<field>
    overrides of run options and train.epochs only."""
    if flags.FLAGS["config"].present:
        return _CONFIG.value
    from exon_jax import run_record

    stored = run_record.run_identity(workdir).config
    if stored is None:  # a new run: the default config
        return _CONFIG.value
    overrides = dict(config_flags.get_override_values(flags.FLAGS["config"]))
    epochs = overrides.pop("train.epochs", None)
    config = run_record.apply_overrides(stored, overrides)
    if epochs is not None:
        config.train.epochs = epochs
    import jax

    if jax.process_index() == 0:
        print(
            f"note: no --config: the run's stored config ({workdir}), with "
            + (", ".join(f"{k}={v}" for k, v in sorted(overrides.items())) or "no overrides")
            + (f", train.epochs={epochs}" if epochs is not None else ""),
            file=sys.stderr,
        )
    return config


def _figure_pool(config):
    """The processes drawing the run's figures (process 0 draws them), or None."""
    import jax

    if not config.analysis.figures or jax.process_index() != 0:
        return None
    from exon_jax import plots

    return plots.FigurePool(config.analysis.get("figure_workers", 0))


def run() -> None:
    """Runs the chosen mode; raises the library's own errors on expected failures."""
    from exon_jax import saved_run, timing, training

    workdir = _WORKDIR.value
    if _MODE.value == "train":
        stopwatch = timing.Stopwatch()
        stopwatch.seconds["startup"] = timing.process_age_seconds() or 0.0
        config = _train_config(workdir)
        with stopwatch.phase("setup"):  # starts the backend; the figure workers start now
            pool = _figure_pool(config)  # and warm up while the model trains
        with pool or contextlib.nullcontext():
            trained = training.run(config, workdir, stopwatch=stopwatch)
            _print_results(trained.results)
            if config.analysis.figures:
                with stopwatch.phase("figures"):
                    saved_run.write_figures(
                        trained.exp, trained.states, trained.evaluated, workdir, pool
                    )
                    if pool is not None:
                        pool.close()  # joining the workers belongs to drawing
                print(f"figures in {os.path.join(workdir, 'figures')}")
        import jax

        if jax.process_index() == 0:
            stopwatch.write(workdir, timing.process_age_seconds())
        return
    overrides = config_flags.get_override_values(flags.FLAGS["config"])
    if flags.FLAGS["config"].present:
        print(
            "note: --mode=evaluate/analyze use the config stored with the run; --config= "
            "is ignored (give --config.<field>=... to change run options)",
            file=sys.stderr,
        )
    if _MODE.value == "evaluate":
        _print_results(saved_run.evaluate(workdir, overrides), saved_run.results_tag(overrides))
    else:
        saved_run.analyze(workdir, overrides)
        print(f"figures written to {os.path.join(workdir, 'figures')}")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    try:
        _initialize_distributed()
        _check_workdir(_WORKDIR.value)
    except _SetupError as error:
        if _DEBUG.value:
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    _use_compilation_cache()
    if _DEBUG.value:
        from exon_jax import checkpoints

        checkpoints.show_orbax_logs()
    from exon_jax.errors import EXPECTED_ERRORS
    from exon_jax.preemption import PREEMPTED_STATUS, Preempted

    try:
        run()
    except Preempted as error:
        print(f"{error}; resume with: {shlex.join([sys.executable, *sys.argv])}", file=sys.stderr)
        sys.stderr.flush()
        sys.exit(PREEMPTED_STATUS)
    except Exception as error:  # noqa: BLE001 - sorted below: expected, a lost peer, a bug
        if _DEBUG.value or not (isinstance(error, EXPECTED_ERRORS) or _peer_lost(error)):
            raise
        message = str(error)
        if not isinstance(error, EXPECTED_ERRORS):
            message = (
                "another process of this run stopped or cannot be reached ("
                + " ".join(message.split())[:160]
                + "); restart every process to resume from the last checkpoint in "
                + os.path.join(_WORKDIR.value, "checkpoints")
            )
        log = _keep_traceback(_WORKDIR.value)
        print(f"error: {message}" + (f" (traceback in {log})" if log else ""), file=sys.stderr)
        sys.stderr.flush()
        from exon_jax.parallel import ProcessMismatch

        if _in_cluster() and not isinstance(error, ProcessMismatch):
            os._exit(1)  # no shutdown barrier: the other processes see this one gone and stop
        sys.exit(1)  # every process raised it alike: they leave together, nothing cut short


_PEER_LOST = ("Gloo", "heartbeat", "Connection reset", "UNAVAILABLE", "Barrier", "barrier")


def _peer_lost(error: BaseException) -> bool:
    """A collective or the coordination service failed because another process is gone
    (then this one exits in one line, skipping the shutdown barrier and its abort dump)."""
    import jax

    return (
        _in_cluster()
        # jax raises a failed Gloo collective as JaxRuntimeError or (process_allgather)
        # ValueError, depending on the call
        and isinstance(error, (jax.errors.JaxRuntimeError, ValueError, RuntimeError))
        and any(s in str(error) for s in _PEER_LOST)
    )


def _in_cluster() -> bool:
    import jax

    return jax.process_count() > 1


def _check_workdir(workdir: str) -> None:
    """Refuses a --workdir that exists but is not a directory."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise _SetupError(f"--workdir={workdir} is a file, not a directory")


_RUN_FILES = ("config.json", "record.json", "checkpoints")


def _keep_traceback(workdir: str) -> str | None:
    """Appends the current traceback to <workdir>/error.log when the workdir holds a run
    (a directory of someone else's is left as it was)."""
    if not any(os.path.exists(os.path.join(workdir, name)) for name in _RUN_FILES):
        return None
    path = os.path.join(workdir, "error.log")
    try:
        with open(path, "a") as f:
            traceback.print_exc(file=f)
    except OSError:
        return None
    return path


def _parse_flags(argv):
    """absl's flag parsing, with a bad flag or config override reported as one line."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        message = str(error)
    except (AttributeError, KeyError) as error:  # ConfigDict: an override names no field
        name = str(error).strip("\"'")
        given = [a.split("=")[0] for a in argv[1:] if a.startswith("--config.")]
        culprits = _unknown_config_fields(argv, given)
        if culprits is None:  # the config file cannot be read here: name what we can
            culprits = [a for a in given if a.split(".")[-1] == name] or given
        message = (
            f"no such config field: {', '.join(culprits)} (the config file defines "
            "every field it accepts)"
        )
    except (TypeError, ValueError) as error:  # ConfigDict: a value of the wrong type
        message = f"a --config override cannot be applied: {error}"
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def _unknown_config_fields(argv, given: list[str]) -> list[str] | None:
    """Each `--config.<field>` of `given` that the config file does not define, with the
    closest field it does define ("--config.train.epoch (did you mean
    --config.train.epochs?)"); None when the config file cannot be loaded here."""
    import difflib
    import importlib.util

    import ml_collections

    spec = next((a.split("=", 1)[1] for a in argv[1:] if a.startswith("--config=")), None)
    path, _, arg = (spec or _DEFAULT_CONFIG).partition(":")
    try:
        module_spec = importlib.util.spec_from_file_location("_exon_config_check", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        config = module.get_config(arg) if arg else module.get_config()
    except Exception:  # noqa: BLE001 - any failure: fall back to the plain message
        return None
    unknown = []
    for flag in given:
        parts = flag.removeprefix("--config.").split(".")
        node = config
        for i, part in enumerate(parts):
            if isinstance(node, ml_collections.ConfigDict) and part in node:
                node = node[part]
                continue
            keys = list(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
            close = difflib.get_close_matches(part, keys, n=1)
            hint = ""
            if close:
                hint = (
                    f" (did you mean --config.{'.'.join([*parts[:i], close[0], *parts[i + 1 :]])}?)"
                )
            unknown.append(flag + hint)
            break
    return unknown or None


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)
