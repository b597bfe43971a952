"""What `main.py` does with its flags: distributed start, the compilation cache, one call
of `workflow` per mode, and every failure as one line with its exit status.

Exit statuses: 0 done; 1 an expected failure (`errors.EXPECTED_ERRORS`, a bad flag or
setting, a lost peer), one line on stderr (the traceback in <workdir>/error.log);
75 (`preemption.PREEMPTED_STATUS`) a stop signal, the epoch saved.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
import traceback
from typing import Any


class SetupError(Exception):
    """A command-line setting that cannot work, reported in one line."""


@dataclasses.dataclass(frozen=True)
class Command:
    """One `main.py` invocation, its flags read.

    Attributes:
      mode: 'train', 'evaluate', 'analyze' or 'embed'.
      workdir: the run's directory.
      config: --config's config (the default file's when --config was not given).
      config_given: whether --config was given.
      overrides: the --config.<field>=value overrides, {"train.epochs": 5, ...}.
      debug: raise instead of printing one line.
      distributed: --distributed (cluster auto-detection).
      coordinator_address, num_processes, process_id: jax.distributed's flags (None: unset).
      heartbeat_timeout: seconds after which the others stop when one process died.
      compilation_cache: directory of JAX's persistent compilation cache ('' = off).
      argv: the command line (the resume hint repeats it).
    """

    mode: str
    workdir: str
    config: Any
    config_given: bool
    overrides: dict[str, Any]
    debug: bool = False
    distributed: bool = False
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    heartbeat_timeout: int = 60
    compilation_cache: str = ""
    argv: tuple[str, ...] = ()


def main(command: Command) -> None:
    """Runs `command`; exits the process with its status on a failure (see the module)."""
    from exon_jax.ops import host_allocator

    host_allocator.tune()  # glibc's defaults unless EXON_MALLOC_TUNING=1 (before XLA allocates)
    from absl import logging

    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    try:
        _initialize_distributed(command)
        _check_workdir(command.workdir)
    except SetupError as error:
        if command.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    _use_compilation_cache(command.compilation_cache)
    if command.debug:
        from exon_jax.ops import checkpoints

        checkpoints.show_orbax_logs()
    from exon_jax.errors import EXPECTED_ERRORS
    from exon_jax.ops import peer_watch
    from exon_jax.ops.preemption import PREEMPTED_STATUS, Preempted

    try:
        with peer_watch.PeerWatch(
            peer_watch.watch_timeout(command.heartbeat_timeout),
            checkpoint_dir=os.path.join(command.workdir, "checkpoints"),
        ):
            run(command)
    except Preempted as error:
        print(f"{error}; resume with: {shlex.join(command.argv)}", file=sys.stderr)
        sys.stderr.flush()
        sys.exit(PREEMPTED_STATUS)
    except Exception as error:  # noqa: BLE001 - sorted below: expected, a lost peer, a bug
        if command.debug or not (isinstance(error, EXPECTED_ERRORS) or _peer_lost(error)):
            raise
        message = str(error)
        if not isinstance(error, EXPECTED_ERRORS):
            message = (
                "another process of this run stopped or cannot be reached ("
                + " ".join(message.split())[:160]
                + "); restart every process to resume from the last checkpoint in "
                + os.path.join(command.workdir, "checkpoints")
            )
        log = _keep_traceback(command.workdir)
        print(f"error: {message}" + (f" (traceback in {log})" if log else ""), file=sys.stderr)
        sys.stderr.flush()
        from exon_jax.parallel import ProcessMismatch

        if _in_cluster() and not isinstance(error, ProcessMismatch):
            os._exit(1)  # no shutdown barrier: the other processes see this one gone and stop
        sys.exit(1)  # every process raised it alike: they leave together, nothing cut short


def run(command: Command) -> None:
    """The mode's library call; raises the library's own errors on expected failures."""
    from exon_jax import workflow

    if command.mode == "train":
        workflow.train(train_config(command), command.workdir)
        return
    if command.config_given:
        print(
            "note: --mode=evaluate/analyze/embed use the config stored with the run; --config= "
            "is ignored (give --config.<field>=... to change run options)",
            file=sys.stderr,
        )
    if command.mode == "evaluate":
        workflow.evaluate(command.workdir, command.overrides)
    elif command.mode == "embed":
        workflow.embed(command.workdir, command.overrides)
    else:
        workflow.analyze(command.workdir, command.overrides)


def train_config(command: Command):
    """--config's config; without --config, a workdir that holds a run resumes with the
    config it stored (config.json, or its newest checkpoint's), with --config.<field>
    overrides of run options and train.epochs only."""
    if command.config_given:
        return command.config
    from exon_jax.ops import run_record

    stored = run_record.run_identity(command.workdir).config
    if stored is None:  # a new run: the default config
        return command.config
    overrides = dict(command.overrides)
    epochs = overrides.pop("train.epochs", None)
    config = run_record.apply_overrides(stored, overrides)
    if epochs is not None:
        config.train.epochs = epochs
    import jax

    if jax.process_index() == 0:
        print(
            f"note: no --config: the run's stored config ({command.workdir}), with "
            + (", ".join(f"{k}={v}" for k, v in sorted(overrides.items())) or "no overrides")
            + (f", train.epochs={epochs}" if epochs is not None else ""),
            file=sys.stderr,
        )
    return config


def _initialize_distributed(command: Command) -> None:
    """jax.distributed from the three flags, or from the cluster (--distributed).

    Raises:
      SetupError: some of the three flags without the others (outside --distributed), or
        a failed initialisation (e.g. --distributed where no cluster is detected).
    """
    explicit: dict[str, Any] = {
        "coordinator_address": command.coordinator_address,
        "num_processes": command.num_processes,
        "process_id": command.process_id,
    }
    given = {k: v for k, v in explicit.items() if v is not None}
    auto = command.distributed or bool(os.environ.get("EXON_DISTRIBUTED"))
    if given and len(given) < len(explicit) and not auto:
        missing = " and ".join(f"--{k}" for k in explicit if k not in given)
        raise SetupError(
            f"{' '.join(f'--{k}={v}' for k, v in given.items())} needs {missing} too "
            "(or --distributed inside a cluster, which detects them)"
        )
    if given or auto:
        import jax

        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU processes only
        try:
            jax.distributed.initialize(**given, heartbeat_timeout_seconds=command.heartbeat_timeout)
        except (ValueError, RuntimeError) as error:
            how = (
                " (no cluster detected: outside SLURM, Open MPI or Kubernetes give "
                "--coordinator_address, --num_processes and --process_id)"
                if auto and len(given) < len(explicit)
                else ""
            )
            reason = " ".join(str(error).split())[:300]
            raise SetupError(f"jax.distributed cannot start: {reason}{how}") from error


def _use_compilation_cache(directory: str) -> None:
    """JAX's persistent compilation cache in `directory` (every program, however quick to
    compile), unless JAX_COMPILATION_CACHE_DIR already names one."""
    import jax

    if directory and not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


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
        raise SetupError(f"--workdir={workdir} is a file, not a directory")


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


def parse_flags(flag_values, argv, default_config: str):
    """absl's flag parsing, with a bad flag or config override reported as one line
    (`default_config`: the --config file used when none is given)."""
    from absl import flags

    try:
        return flag_values(argv)
    except flags.Error as error:
        message = str(error)
    except (AttributeError, KeyError) as error:  # ConfigDict: an override names no field
        name = str(error).strip("\"'")
        given = [a.split("=")[0] for a in argv[1:] if a.startswith("--config.")]
        culprits = _unknown_config_fields(argv, given, default_config)
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


def _unknown_config_fields(argv, given: list[str], default_config: str) -> list[str] | None:
    """Each `--config.<field>` of `given` that the config file does not define, with the
    closest field it does define ("--config.train.epoch (did you mean
    --config.train.epochs?)"); None when the config file cannot be loaded here."""
    import difflib
    import importlib.util

    import ml_collections

    spec = next((a.split("=", 1)[1] for a in argv[1:] if a.startswith("--config=")), None)
    path, _, arg = (spec or default_config).partition(":")
    try:
        module_spec = importlib.util.spec_from_file_location("_exon_config_check", path)
        module = importlib.util.module_from_spec(module_spec)  # type: ignore[arg-type]
        module_spec.loader.exec_module(module)  # type: ignore[union-attr]
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
