"""The host loop's own machinery: phase timing, ahead-of-time compilation, figures drawn in
worker processes, the TensorBoard writer's background images, figures drawn from the trained
states (identical to --mode=analyze from the checkpoint), the allocator settings."""

import json
import multiprocessing
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from exon_jax import parallel, plots
from exon_jax.ops import figure_workers
from exon_jax.ops import timing
from exon_jax.ops.writers import MetricWriter
from tests.test_run_record import _read_events

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_stopwatch_sums_each_phase_on_a_fake_clock(monkeypatch, tmp_path):
    ticks = iter([0.0, 1.5, 10.0, 10.25, 20.0, 22.0])
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(ticks))
    stopwatch = timing.Stopwatch()
    with stopwatch.phase("compile"):
        pass
    with stopwatch.phase("train"):
        pass
    with pytest.raises(ValueError):
        with stopwatch.phase("train"):  # a phase that raises still counts
            raise ValueError
    assert stopwatch.seconds == {"compile": 1.5, "train": 0.25 + 2.0}
    record = json.load(open(stopwatch.write(str(tmp_path), total_seconds=5.0)))
    assert record == {"phases": {"compile": 1.5, "train": 2.25}, "total": 5.0, "other": 1.25}


@pytest.mark.slow  # a second process (timing infrastructure)
def test_process_age_counts_from_the_process_start():
    code = (
        "import time; time.sleep(0.6); from exon_jax.ops import timing; "
        "print(timing.process_age_seconds())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    age = float(out.stdout)
    assert 0.6 <= age < 60.0


def test_compile_ahead_is_the_jitted_function_compiled_once():
    def f(x):
        return jnp.tanh(x @ x.T).sum(axis=1)

    x = jnp.arange(12.0).reshape(3, 4) / 10
    compiled, memory = parallel.compile_ahead(jax.jit(f), x)
    np.testing.assert_allclose(
        np.asarray(compiled(x)), np.tanh(np.asarray(x) @ np.asarray(x).T).sum(1), rtol=1e-6
    )
    assert memory["gib_per_device"] > 0
    assert not hasattr(compiled, "lower")  # an executable, not a function that compiles again

    def python_loop(x):
        return x + 1

    same, none = parallel.compile_ahead(python_loop, x)
    assert same is python_loop and none == {}


def _jobs(directory):
    rng = np.random.default_rng(0)
    return [
        figure_workers.FigureJob(
            "heatmap",
            os.path.join(directory, "heat.png"),
            (rng.random((2, 3)), [1, 2], [0.1, 0.5, 1.0]),
            dict(title="t", ylabel="a", xlabel="b"),
        ),
        figure_workers.FigureJob(
            "image_grid",
            os.path.join(directory, "grid.png"),
            (rng.random((4, 8, 8, 1)), 2, 2),
            dict(title="images"),
        ),
    ]


@pytest.mark.slow  # figure workers (infrastructure)
def test_figures_drawn_in_worker_processes_equal_those_drawn_here(tmp_path):
    here = figure_workers.save_all(_jobs(str(tmp_path / "here")), workers=1)
    there = figure_workers.save_all(_jobs(str(tmp_path / "there")), workers=2)
    assert [os.path.basename(p) for p in here] == ["heat.png", "grid.png"]
    for a, b in zip(here, there):
        assert open(a, "rb").read() == open(b, "rb").read()
        assert os.path.exists(plots.pdf_path(b))


@pytest.mark.slow  # figure workers (infrastructure)
def test_figure_pool_starts_its_workers_ahead_and_draws_in_job_order(tmp_path):
    before = set(multiprocessing.active_children())
    with figure_workers.FigurePool(2) as pool:
        started = set(multiprocessing.active_children()) - before
        assert len(started) == 2  # running before any figure is asked for
        here = figure_workers.save_all(_jobs(str(tmp_path / "here")), workers=1)
        for round_ in ("first", "second"):  # the same warm workers draw both batches
            # the big image grid is drawn first, yet the paths come back in job order
            there = pool.draw(_jobs(str(tmp_path / round_)))
            assert [os.path.basename(p) for p in there] == ["heat.png", "grid.png"]
            for a, b in zip(here, there):
                assert open(a, "rb").read() == open(b, "rb").read()
        assert set(multiprocessing.active_children()) - before == started
    assert not any(p.is_alive() for p in started)


def test_writer_images_reach_tensorboard_by_close(tmp_path):
    writer = MetricWriter(str(tmp_path), ["a", "b"])
    images = np.linspace(0, 1, 4 * 5 * 5).reshape(4, 5, 5, 1)
    for epoch in range(1, 4):
        for model in range(2):
            writer.write_images(epoch, "probe", images, model)
            writer.write_scalars(epoch, {"train/loss": float(epoch)}, model)
        writer.flush()
    writer.close()
    for run in ("a", "b"):
        directory = tmp_path / "tensorboard" / run
        events = [e for name in os.listdir(directory) for e in _read_events(str(directory / name))]
        steps = sorted(e.step for e in events for v in e.summary.value if v.HasField("image"))
        losses = sorted(
            (e.step, v.simple_value)
            for e in events
            for v in e.summary.value
            if v.tag == "train/loss"
        )
        assert steps == [1, 2, 3]
        assert losses == [(1, 1.0), (2, 2.0), (3, 3.0)]
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [(r["epoch"], r["model"]) for r in rows] == [(e, m) for e in (1, 2, 3) for m in (0, 1)]


@pytest.mark.slow  # a run with six figures, drawn twice (~20 s quiet)
def test_figures_of_the_trained_states_equal_those_analyze_restores(tmp_path):
    """`exon_jax.run` (what main.py --mode=train calls) draws figures from the states
    training leaves in memory; they are byte-identical to those `exon_jax.analyze` (--mode=
    analyze) draws from the checkpoint. The run's phases, figures included, are timed in
    timings.json."""
    import exon_jax
    from configs import mnist
    from tests.synthetic import synthetic_mnist

    dataset = synthetic_mnist(num_train=1200, num_test=200)
    config = mnist.get_config("tiny")
    config.train.epochs = 1
    config.analysis.grid_size = 7
    config.analysis.label_map_size = 40
    config.analysis.figure_workers = 1
    config.analysis.pdf = False  # kept by the run's record: analyze draws no PDF either
    workdir = str(tmp_path)
    exon_jax.run(config, workdir, dataset, progress=False)
    with open(os.path.join(workdir, "timings.json")) as f:
        phases = json.load(f)["phases"]
    assert {"setup", "compile", "train", "evaluate", "logging", "checkpoints", "figures"} <= set(
        phases
    )
    directory = os.path.join(workdir, "figures")
    drawn = [os.path.join(directory, n) for n in os.listdir(directory) if n.endswith(".png")]
    assert len(drawn) == 6
    first = {path: open(path, "rb").read() for path in drawn}
    again = exon_jax.analyze(workdir, dataset=dataset, progress=False)
    assert sorted(again) == sorted(first)
    for path, content in first.items():
        assert open(path, "rb").read() == content, path
    assert not [n for n in os.listdir(directory) if n.endswith(".pdf")]


def test_main_applies_no_allocator_settings_at_import():
    """main.py only defines flags when imported; `host_allocator.tune()` runs when the
    command runs (`exon_jax.cli.main`)."""
    code = (
        "import sys; from exon_jax.ops import host_allocator; calls = []; "
        "host_allocator.tune = lambda: calls.append(1); import main; "
        "print(len(calls), 'jax' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["0", "False"]


_MMAP_PROBE = """
import ctypes, json
from exon_jax.ops import host_allocator
done = host_allocator.tune()
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                "usmblks", "fsmblks", "uordblks", "fordblks",
                                                "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.mallinfo2.restype = MallInfo2
before = libc.mallinfo2().hblkhd
block = libc.malloc(64 << 20)
print(json.dumps({"tuned": done["tuned"], "mmapped_bytes": libc.mallinfo2().hblkhd - before}))
"""


def _probe(code: str, env: dict) -> dict:
    """The JSON a fresh `python -c code` process prints (allocator settings are per process)."""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT, env=env
    )
    return json.loads(out.stdout)


@pytest.mark.parametrize("tuning", ["1", "0"])
@pytest.mark.slow  # malloc tuning (infrastructure), two process starts
def test_host_allocator_keeps_large_blocks_off_mmap(tuning):
    """glibc's own statistics: after `tune()` a 64 MiB malloc comes from the heap (no mmap'd
    bytes); untouched (EXON_MALLOC_TUNING=0), glibc mmaps it."""
    probe = _probe(_MMAP_PROBE, dict(os.environ, EXON_MALLOC_TUNING=tuning))
    if tuning == "1":
        assert probe == {"tuned": True, "mmapped_bytes": 0}
    else:
        assert not probe["tuned"] and probe["mmapped_bytes"] >= 64 << 20


_ARENA_PROBE = """
import ctypes, json, os, tempfile, threading
from exon_jax.ops import host_allocator
host_allocator.tune()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.fopen.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
started = threading.Barrier(4)
done = threading.Barrier(4)
def allocate():
    started.wait()
    block = libc.malloc(1 << 16)  # a new thread's first malloc takes an arena
    done.wait()
    libc.free(block)
threads = [threading.Thread(target=allocate) for _ in range(3)]
for thread in threads:
    thread.start()
started.wait()
done.wait()
path = os.path.join(tempfile.mkdtemp(), "info.xml")
stream = libc.fopen(path.encode(), b"w")
libc.malloc_info(0, stream)
libc.fclose(stream)
for thread in threads:
    thread.join()
print(json.dumps({"heaps": open(path).read().count("<heap nr=")}))
"""


@pytest.mark.parametrize("tuning", [None, "1"])
@pytest.mark.slow  # malloc tuning (infrastructure), two process starts
def test_host_allocator_keeps_glibcs_arenas_unless_asked(tuning):
    """glibc's own malloc_info, three threads allocating at once beside the main one: by
    default each gets its own arena (the single arena main.py used to set made XLA's
    threads queue for its lock: compiling 1.55x slower here, bench/allocator.py); with
    EXON_MALLOC_TUNING=1 they share one."""
    env = dict(os.environ)
    env.pop("EXON_MALLOC_TUNING", None)
    if tuning is not None:
        env["EXON_MALLOC_TUNING"] = tuning
    assert _probe(_ARENA_PROBE, env)["heaps"] == (4 if tuning is None else 1)


def test_memory_line_says_unknown_for_a_stepwise_epoch(capsys):
    """A stepwise epoch is not compiled ahead (`parallel.compile_ahead` returns {}): the log
    line says its memory is unknown instead of printing nan; a known size is printed."""
    import types

    from exon_jax import training

    exp = types.SimpleNamespace(
        num_models=1,
        mesh=parallel.make_mesh(1, jax.devices()[:1]),
        settings=types.SimpleNamespace(steps_per_epoch=7),
    )
    training._check_memory(exp, {}, progress=True)
    line = capsys.readouterr().out
    assert "nan" not in line and "7 steps/epoch; memory per device unknown" in line, line
    training._check_memory(exp, {"gib_per_device": 0.25, "temp_gib": 0.1}, progress=True)
    assert "compiled epoch needs 0.25 GiB per device" in capsys.readouterr().out
