"""Test error by epoch: our revision runs beside the authors' logged curves.

  python -m experiments.official_curves --official=<clone of an-seunghwan/EXoN_official> \
      --workdirs=workdirs/mnist100_revision[,more runs] --out=docs/results [--lines=0.1,0.25]

Reads their TensorBoard event files (`logs/mnist_100/beta_*/test/events.*`, tag `accuracy`,
one value per epoch, step 0 = after epoch 1) and our runs' metrics.jsonl
(`eval/classification_error`, epochs counted from 1), and draws test error (%) by epoch:
their eight betas as a band (min to max) with the betas of `--lines` (default 0.1) as
lines, each of our runs as a line. Writes `official_curves.png` and `official_curves.json` (every value plotted).
"""

from __future__ import annotations

import glob
import json
import os
import struct
from typing import Iterator

import numpy as np


def read_event_records(path: str) -> Iterator[bytes]:
    """The serialised records of a TFRecord file (TensorBoard's event files): each is
    uint64 length, uint32 CRC of the length, data, uint32 CRC of the data (CRCs not checked)."""
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos + 12 <= len(data):
        (length,) = struct.unpack("<Q", data[pos : pos + 8])
        start = pos + 12
        if start + length > len(data):
            raise ValueError(f"{path}: truncated record at byte {pos}")
        yield data[start : start + length]
        pos = start + length + 4


def read_scalars(path: str, tag: str) -> dict[int, float]:
    """{step: value} of scalar `tag` in one event file (TF 2 tensor summaries or TF 1
    simple values)."""
    from tensorboardX.proto import event_pb2

    values: dict[int, float] = {}
    for record in read_event_records(path):
        event = event_pb2.Event.FromString(record)
        for value in event.summary.value:
            if value.tag != tag:
                continue
            if value.HasField("tensor"):
                tensor = value.tensor
                if tensor.tensor_content:
                    scalar = float(np.frombuffer(tensor.tensor_content, "<f4")[0])
                else:
                    scalar = float(tensor.float_val[0])
            else:
                scalar = float(value.simple_value)
            values[int(event.step)] = scalar
    return values


def official_test_errors(official: str, experiment: str = "mnist_100") -> dict[str, np.ndarray]:
    """{beta: test error in % [E]} from their `logs/<experiment>/beta_*/test` events;
    entry e is the error after epoch e + 1."""
    curves = {}

    def beta(folder: str) -> float:
        try:
            return float(os.path.basename(folder)[len("beta_") :])
        except ValueError:  # e.g. their beta_path.csv
            return float("nan")

    folders = glob.glob(os.path.join(official, "logs", experiment, "beta_*"))
    folders = [f for f in folders if os.path.isdir(f) and beta(f) == beta(f)]
    for folder in sorted(folders, key=beta):
        files = sorted(glob.glob(os.path.join(folder, "test", "events.*")))
        if not files:
            continue
        accuracy = {}
        for path in files:
            accuracy.update(read_scalars(path, "accuracy"))
        steps = sorted(accuracy)
        curves[os.path.basename(folder)[len("beta_") :]] = 100.0 * (
            1.0 - np.asarray([accuracy[s] for s in steps])
        )
    if not curves:
        raise FileNotFoundError(
            f"no logs/{experiment}/beta_*/test event files under {official} "
            "(give the root of a clone of an-seunghwan/EXoN_official)"
        )
    return curves


def our_test_errors(workdir: str, model: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(epochs [E'], test error in % [E']) of model `model` from `<workdir>/metrics.jsonl`."""
    epochs, errors = [], []
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            if row.get("model", 0) == model and row.get("eval/classification_error") is not None:
                epochs.append(int(row["epoch"]))
                errors.append(100.0 * float(row["eval/classification_error"]))
    return np.asarray(epochs), np.asarray(errors)


def main(
    official: str, workdirs: str, out: str, experiment: str = "mnist_100", lines: str = "0.1"
) -> str:
    """Draws the figure (their betas in `lines`, comma-separated, as lines over the band);
    returns the PNG's path."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    theirs = official_test_errors(official, experiment)
    line_betas = [b for b in lines.split(",") if b]
    missing = [b for b in line_betas if b not in theirs]
    if missing:
        raise ValueError(
            f"--lines: no logs/{experiment}/beta_<b> for {', '.join(missing)}; "
            f"their betas: {', '.join(theirs)}"
        )
    length = min(len(c) for c in theirs.values())
    stacked = np.stack([c[:length] for c in theirs.values()])
    their_epochs = np.arange(1, length + 1)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), constrained_layout=True)
    ax.fill_between(
        their_epochs,
        stacked.min(0),
        stacked.max(0),
        color="0.8",
        label=f"EXoN_official, beta in {{{', '.join(theirs)}}}",
    )
    for beta, style in zip(line_betas, ["-", "--", ":", "-."] * len(line_betas)):
        ax.plot(
            their_epochs,
            theirs[beta][:length],
            color="0.4",
            ls=style,
            lw=1,
            label=f"EXoN_official, beta {beta}",
        )
    record = {"official": {b: c.tolist() for b, c in theirs.items()}, "ours": {}}
    for workdir in [w for w in workdirs.split(",") if w]:
        epochs, errors = our_test_errors(workdir)
        name = os.path.basename(workdir.rstrip("/"))
        record["ours"][name] = {"epochs": epochs.tolist(), "error_percent": errors.tolist()}
        ax.plot(epochs, errors, marker="o", ms=2.5, lw=1.2, label=f"exon_jax: {name}")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.set_xlabel("epoch")
    ax.set_ylabel("test error (%)")
    ax.set_title(f"{experiment}: test error by epoch")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "official_curves.png")
    fig.savefig(path, dpi=150)
    plt.close(fig)
    with open(os.path.join(out, "official_curves.json"), "w") as f:
        json.dump(record, f, indent=1)
    return path


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, help="root of a clone of EXoN_official")
    parser.add_argument("--workdirs", default="", help="comma-separated run directories")
    parser.add_argument("--out", default="docs/results")
    parser.add_argument("--experiment", default="mnist_100")
    parser.add_argument("--lines", default="0.1", help="their betas drawn as lines, e.g. 0.1,0.25")
    args = parser.parse_args()
    print(main(args.official, args.workdirs, args.out, args.experiment, args.lines))
