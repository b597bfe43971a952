"""experiments/official_curves.py reads TensorBoard event files written by an independent
writer (tensorboardX's), in both scalar encodings, and our metrics.jsonl."""

import json
import os

import numpy as np
import pytest
from tensorboardX.event_file_writer import EventFileWriter
from tensorboardX.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2

from experiments import official_curves


def _tensor_event(step, tag, value):
    tensor = tensor_pb2.TensorProto(
        dtype=1,  # DT_FLOAT
        tensor_shape=tensor_shape_pb2.TensorShapeProto(),
        tensor_content=np.float32(value).tobytes(),
    )
    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, tensor=tensor)])
    return event_pb2.Event(step=step, summary=summary)


def _write(folder, events):
    writer = EventFileWriter(folder)
    for event in events:
        writer.add_event(event)
    writer.close()


def test_reads_tensor_and_simple_value_scalars(tmp_path):
    accuracies = [0.65, 0.903, 0.919]
    folder = str(tmp_path / "logs" / "mnist_100" / "beta_0.1" / "test")
    events = [_tensor_event(s, "accuracy", a) for s, a in enumerate(accuracies)]
    events.insert(1, _tensor_event(0, "recon_loss", 123.0))  # another tag: ignored
    _write(folder, events)
    (path,) = [os.path.join(folder, f) for f in os.listdir(folder)]
    scalars = official_curves.read_scalars(path, "accuracy")
    assert sorted(scalars) == [0, 1, 2]
    np.testing.assert_allclose([scalars[s] for s in range(3)], accuracies, rtol=1e-7)

    simple = str(tmp_path / "logs" / "mnist_100" / "beta_5" / "test")
    value = summary_pb2.Summary.Value(tag="accuracy", simple_value=0.5)
    _write(simple, [event_pb2.Event(step=0, summary=summary_pb2.Summary(value=[value]))])
    (tmp_path / "logs" / "mnist_100" / "beta_path.csv").write_text("beta,error\n")  # as theirs
    errors = official_curves.official_test_errors(str(tmp_path))
    assert set(errors) == {"0.1", "5"}
    np.testing.assert_allclose(errors["0.1"], 100 * (1 - np.float32(accuracies)), rtol=1e-5)
    np.testing.assert_allclose(errors["5"], [50.0])


def test_figure_and_record_from_both_sources(tmp_path):
    _write(
        str(tmp_path / "official" / "logs" / "mnist_100" / "beta_0.1" / "test"),
        [_tensor_event(s, "accuracy", a) for s, a in enumerate([0.6, 0.9, 0.95])],
    )
    run = tmp_path / "run"
    run.mkdir()
    rows = [{"epoch": 1, "model": 0, "train/loss": 1.0}]
    rows += [
        {"epoch": e, "model": 0, "eval/classification_error": v} for e, v in [(1, 0.3), (2, 0.1)]
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    png = official_curves.main(str(tmp_path / "official"), str(run), str(tmp_path / "out"))
    assert os.path.getsize(png) > 0
    record = json.loads((tmp_path / "out" / "official_curves.json").read_text())
    assert record["ours"]["run"] == {"epochs": [1, 2], "error_percent": [30.0, 10.0]}
    np.testing.assert_allclose(record["official"]["0.1"], [40.0, 10.0, 5.0], rtol=1e-5)


def test_their_lines_are_chosen_and_an_absent_beta_is_named(tmp_path):
    for beta, accuracies in (("0.1", [0.6, 0.9]), ("0.25", [0.5, 0.8])):
        _write(
            str(tmp_path / "official" / "logs" / "mnist_100" / f"beta_{beta}" / "test"),
            [_tensor_event(s, "accuracy", a) for s, a in enumerate(accuracies)],
        )
    out = str(tmp_path / "out")
    png = official_curves.main(str(tmp_path / "official"), "", out, lines="0.1,0.25")
    assert os.path.getsize(png) > 0
    with pytest.raises(
        ValueError, match="no logs/mnist_100/beta_<b> for 0.5; their betas: 0.1, 0.25"
    ):
        official_curves.main(str(tmp_path / "official"), "", out, lines="0.1,0.5")
