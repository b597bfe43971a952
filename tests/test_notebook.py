"""The tutorial notebook (notebooks/design_your_latent_space.ipynb) runs top to bottom.

No Jupyter needed: the .ipynb is JSON, its code cells are executed in order in one
namespace, in the notebook's folder (a notebook server's working directory), with
Matplotlib's Agg backend; `plt.show` closes each figure, as the inline backend does. The
checks then read the namespace the notebook left: the trained runs, their errors, the
class order of the folder of images. The stored copy must carry no outputs.
"""

import csv
import json
import os
import sys
import tempfile

import jax
import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "notebooks", "design_your_latent_space.ipynb")
MNIST = os.path.join(ROOT, "data", "mnist", "mnist.npz")


def load_notebook() -> dict:
    with open(NOTEBOOK, encoding="utf-8") as f:
        return json.load(f)


def code_cells(notebook: dict) -> list[str]:
    return ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]


@pytest.fixture
def shown(monkeypatch, tmp_path):
    """The notebook's side effects undone: sys.path, JAX's cache settings, its scratch
    folder (tempfile under tmp_path), open figures. Yields the number of open figures at
    each `plt.show()`."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    saved = {
        name: getattr(jax.config, name)
        for name in ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    }
    counts = []

    def show(*args, **kwargs):
        counts.append(len(plt.get_fignums()))
        plt.close("all")

    monkeypatch.setattr(plt, "show", show)
    yield counts
    plt.close("all")
    for name, value in saved.items():
        jax.config.update(name, value)


def execute(cells: list[str], namespace: dict) -> None:
    for index, source in enumerate(cells):
        exec(compile(source, f"<notebook code cell {index}>", "exec"), namespace)


def test_stored_without_outputs():
    notebook = load_notebook()
    assert notebook["nbformat"] == 4
    kinds = [cell["cell_type"] for cell in notebook["cells"]]
    assert kinds.count("code") >= 10 and kinds.count("markdown") >= 10
    assert kinds[0] == "markdown"
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"cell {index} holds outputs: strip them"
            assert cell["execution_count"] is None, f"cell {index} has an execution count"
            source = "".join(cell["source"])
            assert not any(  # magics would not run outside IPython
                line.lstrip().startswith(("%", "!")) for line in source.splitlines()
            ), f"cell {index} uses an IPython magic"
        assert "attachments" not in cell


@pytest.mark.skipif(not os.path.isfile(MNIST), reason="needs data/mnist/mnist.npz (make setup)")
def test_setup_cell_finds_the_repository_from_its_root(monkeypatch, shown):
    monkeypatch.chdir(ROOT)
    sys.path[:] = [p for p in sys.path if p not in ("", ".", ROOT)]  # the fixture restores it
    namespace: dict = {"__name__": "__main__"}
    execute(code_cells(load_notebook())[:2], namespace)
    assert namespace["ROOT"] == ROOT
    assert namespace["DATA_DIR"] == os.path.join(ROOT, "data")
    assert ROOT in sys.path


@pytest.mark.slow  # ~80 s: trains the notebook's runs (tutorial integration)
@pytest.mark.skipif(not os.path.isfile(MNIST), reason="needs data/mnist/mnist.npz (make setup)")
def test_runs_top_to_bottom(monkeypatch, shown):
    monkeypatch.chdir(os.path.dirname(NOTEBOOK))  # where a notebook server runs it
    namespace: dict = {"__name__": "__main__"}
    execute(code_cells(load_notebook()), namespace)
    ns = namespace

    assert ns["ROOT"] == ROOT
    assert ns["SCRATCH"].startswith(tempfile.gettempdir())
    # Every figure drawn and shown: design, codes, centres, plane, samples, paths, folder.
    assert len(shown) >= 7 and all(count >= 1 for count in shown), shown

    # MNIST with the even-above-odd design: learnt something (chance is 0.9).
    run, results = ns["run"], ns["results"]
    assert results["models"][0]["classification_error"] == ns["test_error"]
    assert ns["test_error"] < 0.6, ns["test_error"]
    assert run.num_classes == 10 and run.latent_dim == 2
    np.testing.assert_allclose(run.prior.means, ns["means"], atol=1e-5)
    assert list(ns["centres"]) == [str(k) for k in range(10)]
    assert np.median([s.distance_sd for s in ns["centres"].values()]) < 4.0
    assert np.mean(ns["read_back"] == 3) >= 0.5, ns["read_back"]

    # The folder of images: one class per folder, named and ordered as the folders sort.
    folders = sorted(os.listdir(ns["FOLDER"]))
    my_run = ns["my_run"]
    assert folders == ns["FOLDER_CLASSES"] == ["one", "seven", "zero"]
    assert my_run.num_classes == len(folders)
    assert my_run.class_names == tuple(folders)
    for k, name in enumerate(folders):  # each designed centre kept with its class
        np.testing.assert_allclose(my_run.prior.means[k], ns["my_design"][name])
    assert ns["my_results"]["models"][0]["classification_error"] < 0.3, ns["my_results"]
    assert set(ns["my_centres"]) == set(folders)
    assert len(ns["my_labels"]) == sum(
        round(0.1 * len(os.listdir(os.path.join(ns["FOLDER"], c)))) for c in folders
    )
    with open(ns["CSV"], newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][:2] == ["label", "predicted"] and len(rows) == len(ns["my_labels"]) + 1
