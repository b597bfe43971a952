"""Shared helpers of the `experiments/` scripts: paths, restore, JSON, text tables, CLI.

Nothing here trains: runs are rebuilt from `workdir/config.json` and the latest
checkpoint in `workdir/checkpoints` (`experiment.restore_run`).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any, Callable, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # `python experiments/x.py` puts experiments/, not the root, on the path
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402


def output_dir(workdir: str, out: str | None) -> str:
    """`out`, or `<workdir>/figures` by default; created if missing."""
    directory = out if out else os.path.join(workdir, "figures")
    os.makedirs(directory, exist_ok=True)
    return directory


def to_jsonable(value: Any) -> Any:
    """NumPy/JAX scalars and arrays to plain Python; NaN and inf become None (valid JSON)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return to_jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def write_json(path: str, payload: Any) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(to_jsonable(payload), f, indent=2)
    return path


def text_table(row_labels: Sequence, col_labels: Sequence, values, fmt: str = "{:.4g}",
               corner: str = "") -> str:
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
    parser.add_argument("--workdir", required=True, help="a training run's directory "
                        "(holds config.json and checkpoints/)")
    parser.add_argument("--out", default=None, help="output directory (default: <workdir>/figures)")
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main(**vars(args))


def strips(rows, titles: Sequence[str], suptitle: str | None = None):
    """`plots.interpolation_strips` widened for its row titles (long titles are otherwise
    cut at the left edge), with an optional figure title."""
    from exon_jax import plots
    fig = plots.interpolation_strips(rows, titles)
    width, height = fig.get_size_inches()
    fig.set_size_inches(width + 0.08 * max(len(t) for t in titles),
                        height + (0.3 if suptitle else 0.0))
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def restore(workdir: str, dataset=None):
    """`experiment.restore_run(workdir)` with the saved config; a relative `data.dir`
    that does not exist from the current directory is looked up from the repository
    root, so the scripts run from any directory.

    Returns:
      (experiment, states with a leading model axis [G], checkpoint meta).
    """
    import ml_collections
    from exon_jax import checkpoints, experiment
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise checkpoints.CheckpointError(f"{path} not found: is {workdir} a training run?")
    with open(path) as f:
        config = ml_collections.ConfigDict(json.load(f))
    data_dir = config.data.dir
    if (dataset is None and not os.path.isabs(data_dir) and not os.path.exists(data_dir)
            and os.path.exists(os.path.join(ROOT, data_dir))):
        config.data.dir = os.path.join(ROOT, data_dir)
    return experiment.restore_run(workdir, config=config, dataset=dataset)
