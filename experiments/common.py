"""Shared helpers of the `experiments/` scripts: paths, restore, JSON file, text tables, CLI.

Nothing here trains: runs are rebuilt from `workdir/config.json` and the latest
checkpoint in `workdir/checkpoints` (`saved_run.restore_run`).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any, Callable, Sequence

import numpy as np

from exon_jax.ops.writers import to_jsonable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def output_dir(workdir: str, out: str | None) -> str:
    """`out`, or `<workdir>/figures` by default; created if missing."""
    directory = out if out else os.path.join(workdir, "figures")
    os.makedirs(directory, exist_ok=True)
    return directory


def write_json(path: str, payload: Any) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(to_jsonable(payload), f, indent=2, allow_nan=False)
    return path


def text_table(
    row_labels: Sequence, col_labels: Sequence, values, fmt: str = "{:.4g}", corner: str = ""
) -> str:
    """A fixed-width text table of a [R, C] matrix (NaN printed as '-')."""
    values = np.asarray(values, dtype=float)
    cells = [[corner, *[str(c) for c in col_labels]]]
    for label, row in zip(row_labels, values):
        cells.append([str(label), *[fmt.format(v) if np.isfinite(v) else "-" for v in row]])
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cli(description: str, main: Callable[..., dict], extra: Callable | None = None) -> None:
    """`--workdir` (required) and `--out` (default <workdir>/figures), then `main(**args)`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--workdir",
        required=True,
        help="a training run's directory (holds config.json and checkpoints/)",
    )
    parser.add_argument("--out", default=None, help="output directory (default: <workdir>/figures)")
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main(**vars(args))


def restore(workdir: str, dataset=None):
    """`saved_run.restore_run(workdir)`: the run's stored config, priors and newest good
    checkpoint (a relative `data.dir` resolves from the repository root too).

    Returns:
      (experiment, states with a leading model axis [G], checkpoint meta).
    """
    from exon_jax import saved_run

    return saved_run.restore_run(workdir, dataset=dataset)
