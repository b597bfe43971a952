"""What a run was trained with: its config, its data set's identity and its priors.

A workdir keeps `config.json` (written once, by the first run) and every checkpoint's
JSON meta holds the full config, the data set's fingerprint and each model's exact
prior arrays. A restart or an evaluation compares against that record before it
writes anything: training fields may not change (`train.epochs` may, to train
longer); run options (`configuration.RUN_OPTION_FIELDS`) may.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import subprocess
import time
from typing import Any

import ml_collections

from exon_jax import configuration
from exon_jax.ops import checkpoints
from exon_jax.ops.checkpoints import CheckpointError
from exon_jax.errors import ExpectedError

CONFIG_FILE = "config.json"
RESUMES_FILE = "resumes.jsonl"
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # exon_jax/


@functools.lru_cache(maxsize=1)
def code_identity() -> dict[str, Any]:
    """What code a run ran: {"exon_jax_version", "git_commit", "git_dirty", "source_sha256"}.

    `git_commit` is the commit of the checkout holding this package (None when it is not
    in one, e.g. an installed wheel); `git_dirty` is True when tracked files differ from
    that commit. `source_sha256` hashes every .py file of the package, so two processes
    of one run can tell that they run the same code even in a dirty checkout.
    """
    import exon_jax

    digest = hashlib.sha256()
    for folder, dirs, files in os.walk(_PACKAGE_DIR):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(folder, name)
            digest.update(os.path.relpath(path, _PACKAGE_DIR).encode() + b"\0")
            with open(path, "rb") as f:
                digest.update(f.read() + b"\0")
    commit, dirty = _git_state(os.path.dirname(_PACKAGE_DIR))
    return {
        "exon_jax_version": exon_jax.__version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "source_sha256": digest.hexdigest(),
    }


def _git_state(root: str) -> tuple[str | None, bool | None]:
    """(HEAD commit, tracked files modified) of the git checkout at `root`, or (None, None)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", root, *args], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()

    try:
        if os.path.realpath(git("rev-parse", "--show-toplevel")) != os.path.realpath(root):
            return None, None  # the package lies in some other repository's tree
        return git("rev-parse", "HEAD"), bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None, None


def config_as_dict(config: ml_collections.ConfigDict | dict) -> dict[str, Any]:
    """The JSON form of a config (tuples as lists), so a stored and a new one compare equal."""
    if isinstance(config, ml_collections.ConfigDict):
        return json.loads(config.to_json_best_effort())
    return json.loads(json.dumps(config))


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def is_run_option(field: str) -> bool:
    """True for fields that cannot change what a run trained (configuration.RUN_OPTION_FIELDS)."""
    return any(field == f or field.startswith(f + ".") for f in configuration.RUN_OPTION_FIELDS)


def changed_fields(stored: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(field, stored value, new value) for each field set in both that differs, sorted.

    Fields the stored record lacks (added to the code after that run) are not compared.
    """
    old, current = flatten(config_as_dict(stored)), flatten(config_as_dict(new))
    return sorted(
        (k, old[k], current[k]) for k in old.keys() & current.keys() if old[k] != current[k]
    )


def _describe(changes) -> str:
    return "; ".join(f"{k}: {old!r} -> {new!r}" for k, old, new in changes)


def read_config(workdir: str) -> dict[str, Any] | None:
    """The stored config.json of a workdir as a dict, or None when there is none."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as error:
        raise configuration.ConfigError(f"{path} cannot be read ({error})") from None


def check_resume(stored: dict[str, Any], config: ml_collections.ConfigDict) -> list:
    """Refuses a restart whose config changes a training field; returns the allowed changes.

    Raises:
      ConfigError: listing every changed training field with its old and new value.
    """
    changes = changed_fields(stored, config)
    refused = [c for c in changes if c[0] != "train.epochs" and not is_run_option(c[0])]
    if refused:
        raise configuration.ConfigError(
            f"the workdir holds a run trained with another config; changed training fields: "
            f"{_describe(refused)} (use a new --workdir, or put the fields back)"
        )
    return changes


def write_config_once(workdir: str, config: ml_collections.ConfigDict) -> None:
    """Writes config.json unless the workdir already has one (the first run's is kept)."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.write(config.to_json_best_effort(indent=2))


def record_resume(workdir: str, epoch: int, changes) -> None:
    """Appends one line to resumes.jsonl: when, from which epoch, which run options changed,
    and the code that resumed (`code_identity`)."""
    with open(os.path.join(workdir, RESUMES_FILE), "a") as f:
        f.write(
            json.dumps(
                {
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "from_epoch": epoch,
                    "changed": {k: [old, new] for k, old, new in changes},
                    "code": code_identity(),
                }
            )
            + "\n"
        )


def apply_overrides(stored: dict[str, Any], overrides: dict[str, Any]) -> ml_collections.ConfigDict:
    """The stored config with run-option overrides (e.g. {"analysis.grid_size": 9}) applied.

    Raises:
      ConfigError: an override names a training field (it would relabel the trained run)
        or a field the config does not have.
    """
    config = ml_collections.ConfigDict(stored)
    for field, value in overrides.items():
        if not is_run_option(field):
            raise configuration.ConfigError(
                f"config.{field}: cannot be overridden for a trained run (it changes what was "
                f"trained); only {', '.join(configuration.RUN_OPTION_FIELDS)} may be"
            )
        *sections, leaf = field.split(".")
        parent = config
        for part in sections:
            if part not in parent:
                raise configuration.ConfigError(f"config.{field}: no such field")
            parent = parent[part]
        if leaf not in parent:
            raise configuration.ConfigError(f"config.{field}: no such field")
        parent[leaf] = value
    return config


# --- record.json and the data set's identity ------------------------------------------------

RECORD_FILE = "record.json"  # data set identity, grid points and exact priors of a run


class DataMismatch(ExpectedError, ValueError):
    """The data set found now is not the one the run was trained on."""


def write_record_once(workdir: str, record: dict[str, Any]) -> None:
    """Writes record.json unless the workdir has one (the first run's record is kept)."""
    path = os.path.join(workdir, RECORD_FILE)
    if not os.path.exists(path):
        with open(path, "w") as f:
            json.dump(record, f)


RECORD_FIELDS = ("config", "dataset", "points", "priors")  # what record.json must hold
OPTIONAL_RECORD_FIELDS = ("split",)  # kept since the restore needs no data; older runs lack it


def read_record(workdir: str) -> dict[str, Any]:
    """record.json of a trained run (data set identity, points, priors).

    Raises:
      CheckpointError: naming the file, when it is missing, unreadable or incomplete.
    """
    path = os.path.join(workdir, RECORD_FILE)
    if not os.path.exists(path):
        raise CheckpointError(
            f"{path} not found: is {workdir} a training run (of this version of exon_jax)?"
        )
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path} is damaged ({_reason(error)})") from None
    missing = [k for k in RECORD_FIELDS if not isinstance(record, dict) or k not in record]
    if missing:
        raise CheckpointError(f"{path} is damaged (no {', '.join(missing)})")
    return record


def _reason(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def checkpoint_record(workdir: str) -> tuple[int, dict[str, Any]] | None:
    """(epoch, record) from the newest checkpoint whose meta verifies: the config, data
    identity, points and priors every checkpoint keeps; None when no checkpoint has one."""
    found = checkpoints.newest_meta(os.path.join(workdir, "checkpoints"))
    if found is None or any(k not in found[1] for k in RECORD_FIELDS):
        return None
    epoch, meta = found
    return epoch, {k: meta[k] for k in RECORD_FIELDS + OPTIONAL_RECORD_FIELDS if k in meta}


@dataclasses.dataclass
class Identity:
    """A run's config and record as found, or rebuilt from its newest readable checkpoint.

    Attributes:
      config: the stored config as a dict (None: no run in the workdir yet).
      record: record.json's content (None when there is none and no checkpoint).
      notes: one line per file that was missing or damaged and what replaced it.
      rebuilt: the files (CONFIG_FILE, RECORD_FILE) whose content came from a checkpoint.
    """

    config: dict[str, Any] | None
    record: dict[str, Any] | None
    notes: list[str]
    rebuilt: list[str]


def run_identity(workdir: str) -> Identity:
    """config.json and record.json of `workdir`, each rebuilt from the newest checkpoint
    whose meta verifies when it is missing or damaged.

    A workdir without config.json and without checkpoints holds no run (config None).

    Raises:
      ConfigError: naming config.json, when it is missing or damaged while the workdir
        holds checkpoints (or record.json) of which none keeps a readable config: such a
        run's config cannot be compared with a new one.
    """
    config_path = os.path.join(workdir, CONFIG_FILE)
    found = checkpoint_record(workdir)
    notes: list[str] = []
    rebuilt: list[str] = []
    try:
        config = read_config(workdir)
        problem = None if config is not None else "is missing"
    except configuration.ConfigError as error:
        config, problem = None, str(error).removeprefix(config_path + " ")
    record: dict[str, Any] | None = None
    record_problem: str | None = None
    try:
        record = read_record(workdir)
    except CheckpointError as error:
        record_problem = str(error)
    if problem is not None:
        if found is not None:
            config = found[1]["config"]
            notes.append(f"{config_path} {problem}: rebuilt from checkpoint {found[0]}")
            rebuilt.append(CONFIG_FILE)
        elif record is not None:
            config = record["config"]
            notes.append(f"{config_path} {problem}: rebuilt from {RECORD_FILE}")
            rebuilt.append(CONFIG_FILE)
        elif problem != "is missing" or _has_checkpoints(workdir):
            raise configuration.ConfigError(
                f"{config_path} {problem} and no checkpoint in "
                f"{os.path.join(workdir, 'checkpoints')} keeps a readable config: the run's "
                "config cannot be compared (restore the file, or use a new --workdir)"
            )
    if record_problem is not None and config is not None and found is not None:
        record = found[1]
        record_path = os.path.join(workdir, RECORD_FILE)
        state = "is damaged" if os.path.exists(record_path) else "is missing"
        notes.append(f"{record_path} {state}: rebuilt from checkpoint {found[0]}")
        rebuilt.append(RECORD_FILE)
    elif record_problem is not None and os.path.exists(os.path.join(workdir, RECORD_FILE)):
        # damaged, and no checkpoint to rebuild it from: this run writes it anew
        notes.append(f"{record_problem}: no checkpoint keeps it; written anew by this run")
        rebuilt.append(RECORD_FILE)
    return Identity(config, record, notes, rebuilt)


def _has_checkpoints(workdir: str) -> bool:
    try:
        return any(n.isdigit() for n in os.listdir(os.path.join(workdir, "checkpoints")))
    except OSError:
        return False


def write_rebuilt(workdir: str, identity: Identity) -> None:
    """Writes the files `identity` rebuilt (a damaged one kept as <name>.damaged)."""
    for name in identity.rebuilt:
        path = os.path.join(workdir, name)
        if os.path.exists(path):
            os.replace(path, path + ".damaged")
        content = identity.config if name == CONFIG_FILE else identity.record
        if content is None:  # nothing to rebuild it from: the run writes it (write_*_once)
            continue
        with open(path, "w") as f:
            json.dump(content, f, indent=2 if name == CONFIG_FILE else None)


def stored_config(
    workdir: str, overrides: dict[str, Any] | None = None
) -> ml_collections.ConfigDict:
    """The config a run in `workdir` was trained with, plus run-option `overrides`."""
    stored = read_config(workdir)
    if stored is None:
        raise CheckpointError(
            f"{os.path.join(workdir, CONFIG_FILE)} not found: is {workdir} a training run?"
        )
    return apply_overrides(stored, overrides or {})


def check_same_data(record: dict[str, Any], fingerprint: dict[str, Any]) -> None:
    """Refuses data whose content hash differs from the one `record` (a checkpoint's meta
    or record.json) holds; a record without one accepts any data."""
    recorded = record.get("dataset")
    if not recorded:
        return
    if recorded.get("sha256") != fingerprint.get("sha256"):
        raise DataMismatch(
            f"the data set differs from the one this run was trained on: recorded "
            f"{recorded.get('name')!r} sha256 {str(recorded.get('sha256'))[:12]}…, found "
            f"{fingerprint.get('name')!r} sha256 {str(fingerprint.get('sha256'))[:12]}…"
        )
