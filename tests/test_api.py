"""`exon_jax.load_run`'s Run: answers it can give, one clear line for those it cannot.

One tiny run (synthetic MNIST-shaped data, 2 epochs, a custom anisotropic weighted prior,
classes named "zero".."nine") is trained once for the module; every call is tried on it.
Numbers are checked against NumPy / SciPy written here, never against the code's output.
"""

import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
import scipy.stats

import exon_jax
from configs import mnist as mnist_config
from exon_jax import api, configuration, data as data_lib, priors, training
from exon_jax.ops import checkpoints
from tests.synthetic import small_mnist_config, synthetic_mnist

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
K, D = 10, 2
THETA = (2.0 * np.arange(K) + 1.0) * np.pi / K
MEANS = 13.0 * np.stack([np.cos(THETA), np.sin(THETA)], axis=-1)
VARIANCES = np.stack([np.full(K, 4.0), np.linspace(2.0, 6.0, K)], axis=-1)  # anisotropic
WEIGHTS = np.array([0.05, 0.15] * 5)


@pytest.fixture(scope="module")
def dataset():
    synthetic = synthetic_mnist(1200, 200)
    return data_lib.ImageDataset(synthetic.train, synthetic.test, "synthetic", NAMES)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, dataset):
    config = small_mnist_config(2, labelled_per_class=20)  # checkpoints 1 and 2
    config.data.name = "synthetic"
    config.prior.layout = "custom"
    config.prior.means = MEANS.tolist()
    config.prior.variances = VARIANCES.tolist()
    config.prior.weights = WEIGHTS.tolist()
    path = str(tmp_path_factory.mktemp("api") / "run")
    training.train_and_evaluate(config, path, dataset=dataset, progress=False)
    return path


@pytest.fixture(scope="module")
def run(workdir):
    return exon_jax.load_run(workdir)


def one_line(error) -> str:
    text = str(error.value)
    assert "\n" not in text, text
    return text


# --- classes, keys, codes ------------------------------------------------------------------


@pytest.mark.parametrize(
    "classes, message",
    [
        ([12, -1, 9], r"class 12 is out of range: this run has 10 classes \(0\.\.9\)"),
        ([-1, 9], r"class -1 is out of range"),
        ([9, 10], r"class 10 is out of range"),
        (["ten"], r"no class 'ten': this run's classes are \('zero', 'one'"),
        ([1.5], r"class 1\.5 must be an int index or a class name"),
        ([True], r"class True must be an int index or a class name"),
        ([[1, 2]], r"classes must be one class or a flat sequence"),
    ],
)
def test_sample_refuses_classes_it_has_not(run, classes, message):
    with pytest.raises(ValueError, match=message) as error:
        run.sample(0, classes)
    one_line(error)


def test_sample_by_name_index_and_int_seed_draws_from_that_component(run):
    key = jax.random.key(3)
    by_index = run.sample(key, [4, 9, 9])
    by_name = run.sample(key, ["four", "nine", np.int64(9)])
    by_seed = run.sample(3, np.array([4, 9, 9]))
    np.testing.assert_array_equal(by_index, by_name)
    np.testing.assert_array_equal(by_index, by_seed)
    assert by_index.shape == (3, 28, 28, 1) and by_index.dtype == np.float32
    # z ~ N(mu_y, diag v_y) with the documented noise draw: decoded, the same images
    noise = np.asarray(jax.random.normal(key, (3, D)))
    y = np.array([4, 9, 9])
    z = MEANS[y] + np.sqrt(VARIANCES[y]) * noise
    np.testing.assert_allclose(by_index, run.decode(z), atol=1e-5)
    import jax.numpy as jnp

    np.testing.assert_array_equal(run.sample(3, jnp.array([4, 9, 9])), by_index)
    np.testing.assert_array_equal(run.sample(3, np.int32(4)), run.sample(3, [4])[0])
    assert run.sample(0, "seven").shape == (28, 28, 1)  # one class: one image
    assert run.sample(0, []).shape == (0, 28, 28, 1)


@pytest.mark.parametrize("key", ["0", 1.5, None, np.zeros(3)])
def test_sample_refuses_what_is_not_a_key(run, key):
    with pytest.raises(ValueError, match=r"key must be a jax\.random\.key\(seed\) or an int seed"):
        run.sample(key, [1])


@pytest.mark.parametrize(
    "codes, message",
    [
        (
            np.zeros((3, 3)),
            r"codes must be \[N, 2\] \(this run's latent_dim\), or one code \[2\], "
            r"got shape \(3, 3\)",
        ),
        (np.zeros(5), r"got shape \(5,\)"),
        (np.zeros((2, 2, 2)), r"got shape \(2, 2, 2\)"),
        (np.array([[0.0, np.nan]]), r"codes hold 1 NaN or infinite value \(row 0 first\)"),
        (np.array([["a", "b"]]), r"codes must be numbers, got dtype <U1"),
    ],
)
def test_decode_refuses_codes_of_the_wrong_width_in_one_line(run, codes, message):
    with pytest.raises(ValueError, match=message) as error:
        run.decode(codes)
    one_line(error)


def test_decode_one_code_and_none(run):
    one = run.decode([MEANS[3, 0], MEANS[3, 1]])
    assert one.shape == (28, 28, 1)
    np.testing.assert_allclose(one, run.decode(MEANS[3:4])[0], atol=1e-6)
    assert run.decode(np.zeros((0, 2))).shape == (0, 28, 28, 1)


# --- images ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_classify_refuses_nan_and_inf_images(run, dataset, bad):
    images = dataset.test.images[:4].astype(np.float32) / 255.0
    images[2, 5, 5, 0] = bad
    with pytest.raises(ValueError, match=r"images hold 1 NaN or infinite value \(image 2 first\)"):
        run.classify(images)


def test_empty_batch_gives_empty_results(run):
    empty = np.zeros((0, 28, 28, 1), np.uint8)
    probs, means, logvars = run.encode(empty)
    assert probs.shape == (0, K) and means.shape == logvars.shape == (0, K, D)
    assert run.classify(empty).shape == (0,)
    assert run.embed(np.zeros((0, 28, 28), np.float32)).shape == (0, D)
    assert run.reconstruct(empty).shape == (0, 28, 28, 1)


def test_one_image_is_accepted_as_passed(run, dataset):
    images = dataset.test.images[:3]
    batch_labels = run.classify(images)
    assert run.classify(images[0]) == batch_labels[0]  # [28, 28, 1]
    assert np.ndim(run.classify(images[0])) == 0
    assert run.classify(images[0, :, :, 0]) == batch_labels[0]  # [28, 28]
    np.testing.assert_allclose(run.embed(images[1]), run.embed(images)[1], atol=1e-5)
    probs, means, _ = run.encode(images[2])
    assert probs.shape == (K,) and means.shape == (K, D)
    assert run.classify(images[:, :, :, 0]).tolist() == batch_labels.tolist()  # [N, 28, 28]


@pytest.mark.parametrize(
    "shape", [(28, 28, 3), (5, 28, 28, 2), (28, 27), (5, 1, 28, 28, 1), (784,), (4, 784)]
)
def test_wrong_image_shape_is_named_as_passed(run, shape):
    with pytest.raises(ValueError) as error:
        run.classify(np.zeros(shape, np.uint8))
    text = one_line(error)
    assert f"got shape {shape}" in text and "[N, 28, 28, 1]" in text, text


@pytest.mark.parametrize(
    "images, message",
    [
        (np.zeros((2, 28, 28, 1), np.int64), r"images have dtype int64: pass uint8 in \[0, 255\]"),
        (np.zeros((2, 28, 28, 1), bool), r"images have dtype bool: pass uint8"),
        (np.full((2, 28, 28, 1), "x"), r"images have dtype <U1: pass uint8"),
        (
            np.full((2, 28, 28, 1), 255.0, np.float32),
            r"float images must lie in \[0, 1\], these lie in \[255, 255\]",
        ),
    ],
)
def test_image_dtypes_are_told_the_right_thing(run, images, message):
    with pytest.raises(ValueError, match=message) as error:
        run.classify(images)
    one_line(error)


def test_batches_of_any_size_reuse_a_few_programs_and_give_the_same_rows(run, dataset):
    compiles = []

    def listen(event, *_, **__):
        if "backend_compile" in event:
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        _encode_in_batches(run, dataset.test.images, compiles)
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)


def _encode_in_batches(run, images, compiles):
    whole = run.encode(images[:200])  # 200 -> one program of 256 rows
    before = len(compiles)
    for n in (129, 150, 200, 255):  # all 256 rows: nothing new compiles
        part = run.encode(images[:n])
        for a, b in zip(part, whole):
            np.testing.assert_allclose(a, b[:n], rtol=1e-6, atol=1e-6)
    assert len(compiles) == before
    many = np.concatenate([images] * 6)[:1100]  # over 1024 rows: two calls of 1024
    np.testing.assert_allclose(run.embed(many)[1024:], run.embed(many[1024:]), atol=1e-5)


def test_reconstruct_decodes_the_posterior_mean_code(run, dataset):
    images = dataset.test.images[:6]
    out = run.reconstruct(images)
    assert out.shape == (6, 28, 28, 1) and 0.0 <= out.min() and out.max() <= 1.0
    np.testing.assert_allclose(out, run.decode(run.embed(images)), atol=1e-6)
    # embed = the mean of the most probable component (an independent argmax here)
    probs, means, _ = run.encode(images)
    np.testing.assert_allclose(
        run.embed(images), means[np.arange(6), np.argmax(probs, axis=1)], atol=1e-6
    )


# --- interpolation, traversal ---------------------------------------------------------------


def test_interpolate_between_classes_and_codes_is_the_straight_line(run):
    codes, images = run.interpolate("two", 7, steps=5)
    t = np.array([0.0, 0.25, 0.5, 0.75, 1.0])[:, None]
    np.testing.assert_allclose(codes, (1 - t) * MEANS[2] + t * MEANS[7], rtol=1e-6, atol=1e-5)
    assert images.shape == (5, 28, 28, 1)
    np.testing.assert_allclose(images, run.decode(codes), atol=1e-6)
    a, b = np.array([1.0, -2.0]), np.array([3.0, 6.0])
    codes, _ = run.interpolate(a, b, steps=3)
    np.testing.assert_allclose(codes, [[1.0, -2.0], [2.0, 2.0], [3.0, 6.0]], atol=1e-6)
    codes, _ = run.interpolate(0, b, steps=2)  # a class and a code
    np.testing.assert_allclose(codes, [MEANS[0], b], atol=1e-5)
    codes, _ = run.interpolate(np.int64(2), jax.numpy.int32(7), steps=5)  # array scalars
    np.testing.assert_allclose(codes[[0, -1]], [MEANS[2], MEANS[7]], atol=1e-5)


@pytest.mark.parametrize(
    "args, message",
    [
        (("two", 7, 1), r"steps must be an int >= 2, got 1"),
        (("two", 7, 2.5), r"steps must be an int >= 2, got 2\.5"),
        (("eleven", 7, 4), r"no class 'eleven'"),
        ((11, 7, 4), r"class 11 is out of range"),
        (
            ([1.0, 2.0, 3.0], 7, 4),
            r"a code must be \[2\] \(this run's latent_dim\), got shape \(3,\)",
        ),
    ],
)
def test_interpolate_refuses_bad_ends(run, args, message):
    with pytest.raises(ValueError, match=message) as error:
        run.interpolate(*args)
    one_line(error)


def test_traverse_walks_one_axis_in_prior_sd_of_the_origin_class(run):
    codes, images = run.traverse("three", axis=1, steps=5, span=2.0)
    expected = np.repeat(MEANS[3][None], 5, axis=0)
    expected[:, 1] += np.linspace(-2.0, 2.0, 5) * math.sqrt(VARIANCES[3, 1])
    np.testing.assert_allclose(codes, expected, rtol=1e-6, atol=1e-5)
    assert images.shape == (5, 28, 28, 1)
    # from a code: the sd of its most probable prior component p(y | z)
    z = np.array([-3.0, 11.0])
    log_post = [
        math.log(w) + scipy.stats.multivariate_normal(m, np.diag(v)).logpdf(z)
        for m, v, w in zip(MEANS, VARIANCES, WEIGHTS)
    ]
    k = int(np.argmax(log_post))
    codes, _ = run.traverse(z, axis=0, steps=3, span=1.0)
    sd = math.sqrt(VARIANCES[k, 0])
    np.testing.assert_allclose(codes[:, 0], [z[0] - sd, z[0], z[0] + sd], rtol=1e-6)
    np.testing.assert_allclose(codes[:, 1], z[1])
    with pytest.raises(ValueError, match=r"axis must be an int in 0\.\.1, got 2"):
        run.traverse(0, axis=2)


# --- class centres ----------------------------------------------------------------------------


def _oracle_centres(codes, labels):
    """Per class: mean code, Mahalanobis distance of the mean to the design, inside-95 %."""
    out = {}
    radius2 = scipy.stats.chi2.ppf(0.95, D)
    for k in np.unique(labels):
        z = codes[labels == k]
        mean = z.mean(axis=0)
        out[NAMES[k]] = (
            len(z),
            mean,
            float(np.sqrt(np.sum((mean - MEANS[k]) ** 2 / VARIANCES[k]))),
            float(np.mean(np.sum((z - MEANS[k]) ** 2 / VARIANCES[k], axis=1) <= radius2)),
        )
    return out


def test_class_centres_match_numpy_and_scipy(run, dataset):
    images, labels = dataset.test.images, dataset.test.labels
    centres = run.class_centres(images, labels)
    assert list(centres) == list(NAMES)
    expected = _oracle_centres(run.embed(images), labels)
    for name, (count, mean, distance, inside) in expected.items():
        got = centres[name]
        assert got.num_codes == count
        np.testing.assert_allclose(got.mean, mean, rtol=1e-5, atol=1e-5)
        assert got.distance_sd == pytest.approx(distance, rel=1e-5, abs=1e-6)
        assert got.inside_95 == pytest.approx(inside, abs=1e-12)
    by_name = run.class_centres(images, [NAMES[y] for y in labels])
    assert by_name["four"].distance_sd == centres["four"].distance_sd
    subset = run.class_centres(images[labels == 4], labels[labels == 4])
    assert list(subset) == ["four"]


def test_centre_statistics_of_prior_draws_sit_on_the_design():
    """Codes drawn from the prior itself: mean near the centre, ~95 % inside (binomial)."""
    rng = np.random.default_rng(0)
    n = 4000
    labels = np.repeat(np.arange(K), n)
    codes = MEANS[labels] + np.sqrt(VARIANCES[labels]) * rng.normal(size=(K * n, D))
    stats = api.centre_statistics(codes, labels, MEANS, VARIANCES, NAMES)
    for k, name in enumerate(NAMES):
        assert abs(stats[name].inside_95 - 0.95) < 4 * math.sqrt(0.95 * 0.05 / n)
        # the mean of n draws: distance ~ sqrt(chi2_d / n) prior sd
        assert stats[name].distance_sd < math.sqrt(scipy.stats.chi2.ppf(0.999, D) / n)
    assert api.chi2_quantile(0.95, 7) == pytest.approx(scipy.stats.chi2.ppf(0.95, 7), rel=1e-10)


def test_centre_statistics_in_five_dimensions_match_scipy_distances():
    """d = 5, anisotropic: scipy's Mahalanobis distance and the chi-square CDF (not the
    quantile) decide each code; classes absent from the labels are absent from the result."""
    from scipy.spatial.distance import mahalanobis

    rng = np.random.default_rng(2)
    k, d = 4, 5
    means = rng.normal(size=(k, d)) * 5
    variances = rng.uniform(0.3, 4.0, size=(k, d))
    labels = rng.choice([0, 1, 3], size=300)
    codes = means[labels] + rng.normal(size=(300, d)) * np.sqrt(variances[labels]) * 1.3
    names = ("a", "b", "c", "d")
    stats = api.centre_statistics(codes, labels, means, variances, names)
    assert list(stats) == ["a", "b", "d"]
    for c in (0, 1, 3):
        z = codes[labels == c]
        inverse = np.diag(1.0 / variances[c])
        distances = np.array([mahalanobis(x, means[c], inverse) for x in z])
        got = stats[names[c]]
        assert got.num_codes == len(z)
        assert got.distance_sd == pytest.approx(
            mahalanobis(z.mean(axis=0), means[c], inverse), rel=1e-9
        )
        assert got.inside_95 == np.mean(scipy.stats.chi2.cdf(distances**2, d) <= 0.95)


@pytest.mark.parametrize(
    "labels, message",
    [
        (np.zeros(3, int), r"labels must be \[N\] = \[4\] \(one per image\), got shape \(3,\)"),
        (np.array([0, 1, 2, 10]), r"class 10 is out of range"),
        (["zero", "one", "two", "dix"], r"no class 'dix'"),
    ],
)
def test_class_centres_refuse_bad_labels(run, dataset, labels, message):
    with pytest.raises(ValueError, match=message) as error:
        run.class_centres(dataset.test.images[:4], labels)
    one_line(error)


# --- prior weights, export --------------------------------------------------------------------


def test_prior_weights_are_normalised_weights(run):
    np.testing.assert_allclose(np.asarray(run.prior.weights), WEIGHTS, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(run.prior.means), MEANS, rtol=1e-6)
    assert float(np.sum(run.prior.weights)) == pytest.approx(1.0, abs=1e-6)


def test_embed_exports_npz_and_csv(run, dataset, tmp_path):
    images, labels = dataset.test.images[:7], dataset.test.labels[:7]
    codes = run.embed(images, path=str(tmp_path / "e.npz"), labels=labels)
    probs = run.encode(images)[0]
    with np.load(tmp_path / "e.npz") as f:
        np.testing.assert_allclose(f["codes"], codes)
        np.testing.assert_array_equal(f["labels"], labels)
        np.testing.assert_allclose(f["probs"], probs, atol=1e-7)
        np.testing.assert_array_equal(f["predicted"], np.argmax(probs, axis=1))
        assert f["class_names"].tolist() == list(NAMES)
    run.embed(images, path=str(tmp_path / "e.csv"), labels=labels)
    with open(tmp_path / "e.csv") as f:
        header = f.readline().strip().split(",")
    assert header[:5] == ["label", "predicted", "z0", "z1", "p_zero"]
    table = np.loadtxt(tmp_path / "e.csv", delimiter=",", skiprows=1, dtype=str)
    assert table[:, 0].tolist() == [NAMES[y] for y in labels]
    np.testing.assert_allclose(table[:, 2:4].astype(float), codes, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(table[:, 4:].astype(float), probs, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match=r"path must end in \.npz or \.csv, got 'e\.txt'"):
        run.embed(images, path=str(tmp_path / "e.txt"))
    with pytest.raises(ValueError, match=r"labels must be \[N\] = \[7\]"):
        run.embed(images, path=str(tmp_path / "f.npz"), labels=labels[:3])
    assert not os.path.exists(tmp_path / "f.npz")


# --- load_run: read-only, says what it restored ---------------------------------------------


def _tree(path):
    """{relative path: (size, mtime_ns)} of every file and directory under `path`."""
    out = {}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(root, name)
            info = os.stat(full)
            out[os.path.relpath(full, path)] = (
                info.st_size if name in files else 0,
                info.st_mtime_ns,
            )
    return out


def test_load_run_changes_nothing_and_says_which_checkpoint(workdir, tmp_path, caplog):
    copy = str(tmp_path / "run")
    shutil.copytree(workdir, copy)
    shutil.rmtree(os.path.join(copy, "checkpoints", "2", "meta"))  # newest damaged
    os.makedirs(os.path.join(copy, "checkpoints", "3.orbax-checkpoint-tmp", "state"))
    before = _tree(copy)
    with pytest.warns(UserWarning) as warned:
        loaded = exon_jax.load_run(copy)
    assert _tree(copy) == before  # nothing moved, deleted or created
    assert loaded.epoch == 1
    (warning,) = [w for w in warned if "checkpoint" in str(w.message)]
    text = str(warning.message)
    assert "\n" not in text
    assert re.search(
        r"restored checkpoint 1 of .*checkpoints; skipped newer checkpoint 2 "
        r"\(incomplete: no meta item\), left in place",
        text,
    ), text
    with caplog.at_level(logging.INFO, logger="exon_jax"):
        exon_jax.load_run(workdir)
    assert re.search(r"load_run: restored checkpoint 2 of .*checkpoints", caplog.text)


def test_load_run_without_config_and_record_reads_them_from_the_checkpoint(
    workdir, run, dataset, tmp_path
):
    copy = str(tmp_path / "run")
    shutil.copytree(workdir, copy)
    os.remove(os.path.join(copy, "config.json"))
    with open(os.path.join(copy, "record.json"), "w") as f:
        f.write('{"points": [')  # cut short
    before = _tree(copy)
    with pytest.warns(UserWarning) as warned:
        loaded = exon_jax.load_run(copy)
    assert _tree(copy) == before
    texts = [str(w.message) for w in warned]
    assert any(re.search(r"config\.json is missing: read from checkpoint 2", t) for t in texts)
    assert any(re.search(r"record\.json is damaged: read from checkpoint 2", t) for t in texts)
    assert loaded.class_names == NAMES and loaded.epoch == 2
    np.testing.assert_array_equal(
        loaded.classify(dataset.test.images), run.classify(dataset.test.images)
    )


def test_load_run_without_checkpoints_creates_nothing(workdir, tmp_path):
    copy = str(tmp_path / "run")
    shutil.copytree(workdir, copy)
    shutil.rmtree(os.path.join(copy, "checkpoints"))
    before = _tree(copy)
    with pytest.raises(checkpoints.CheckpointError, match="no checkpoint") as error:
        exon_jax.load_run(copy)
    one_line(error)
    assert _tree(copy) == before


@pytest.mark.slow  # ~28 s loaded: trains a grid of its own
def test_load_run_of_a_grid_takes_the_asked_point(tmp_path, dataset):
    """Each point's parameters are exactly those the training returned for it."""
    config = small_mnist_config(1, labelled_per_class=20)
    config.data.name = "synthetic"
    config.sweep.lambda1 = (1.0, 30.0)
    trained = training.run(config, str(tmp_path / "grid"), dataset=dataset, progress=False)
    with pytest.raises(ValueError, match=r"holds a grid of 2 models: pass point=") as error:
        exon_jax.load_run(str(tmp_path / "grid"))
    one_line(error)
    for point in (0, "lambda1=30"):
        loaded = exon_jax.load_run(str(tmp_path / "grid"), point)
        index = 0 if point == 0 else 1
        assert loaded.point == {"lambda1": (1.0, 30.0)[index]}
        expected = jax.tree.leaves(
            jax.tree.map(lambda x: np.asarray(x)[index], trained.states.params)
        )
        got = jax.tree.leaves(loaded._state.params)
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"no point 'lambda1=2' in .*; its points are"):
        exon_jax.load_run(str(tmp_path / "grid"), "lambda1=2")


def test_host_checksums_equal_the_jitted_ones():
    import jax.numpy as jnp

    rng = np.random.default_rng(1)
    leaves = [
        jnp.asarray(rng.normal(size=(37, 5)), jnp.float32),
        jnp.asarray(rng.normal(size=(11,)), jnp.bfloat16),
        jnp.asarray(rng.integers(-5, 5, size=(3, 3)), jnp.int32),
        jnp.asarray(rng.integers(0, 2**32, size=(4, 2), dtype=np.uint64), jnp.uint32),
        jnp.asarray(rng.integers(0, 255, size=(9,)), jnp.uint8),
        jnp.asarray([True, False, True]),
        jnp.float32(2.5),
    ]
    _, expected = checkpoints._inspect(leaves)
    got = [checkpoints._host_checksum(np.asarray(x)) for x in leaves]
    assert got == [int(s) for s in np.asarray(expected)]


@pytest.mark.slow  # a second process (import wiring)
def test_load_run_imports_no_plotting_and_compiles_only_what_it_uses(workdir):
    code = f"""
import sys, jax, numpy as np
compiles = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, *_, **__: compiles.append(event) if 'backend_compile' in event else None)
import exon_jax
run = exon_jax.load_run({workdir!r})
at_load = len(compiles)
run.encode(np.zeros((3, 28, 28, 1), np.uint8))
print(at_load, len(compiles) - at_load, 'matplotlib' in sys.modules)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    at_load, encode, plotting = out.stdout.split()
    assert plotting == "False"
    # today 20 (the checksum program, a slice per leaf shape, ...); now only the log of
    # the prior's stored weights (`priors.prior_from_arrays`)
    assert int(at_load) <= 1, out.stdout
    assert int(encode) == 1, out.stdout


# --- prior config (issue 22 item 5) ---------------------------------------------------------


def test_prior_file_without_layout_file_is_refused(tmp_path):
    path = tmp_path / "my.json"
    path.write_text(json.dumps({"means": MEANS.tolist(), "variances": 4.0}))
    config = mnist_config.get_config()
    config.prior.file = str(path)  # layout left at its default, circle
    with pytest.raises(configuration.ConfigError, match=r"prior\.file") as error:
        configuration.validate_config(config)
    text = one_line(error)
    assert "prior.layout is 'circle'" in text and "--config.prior.layout=file" in text, text
    config.prior.layout = "file"
    configuration.validate_config(config)
    config = mnist_config.get_config()
    config.prior.means = MEANS.tolist()  # custom arrays without layout=custom
    with pytest.raises(configuration.ConfigError, match=r"prior\.means.*layout=custom"):
        configuration.validate_config(config)


def _four_figures(x):
    return np.array([float(f"{v:.4g}") for v in x])


def test_weights_to_four_significant_figures_are_normalised_everywhere(tmp_path):
    rng = np.random.default_rng(5)
    weights = _four_figures(rng.dirichlet(np.ones(K)))
    weights[0] += 3e-4 - (weights.sum() - 1.0)  # off by 3e-4: beyond 1e-6, within 4 figures
    weights = _four_figures(weights)
    assert abs(weights.sum() - 1.0) > 1e-6
    expected = weights / weights.sum()
    path = tmp_path / "p.json"
    path.write_text(
        json.dumps({"means": MEANS.tolist(), "variances": 4.0, "weights": weights.tolist()})
    )
    built = []
    for layout in ("file", "custom"):
        config = mnist_config.get_config()
        config.prior.layout = layout
        if layout == "file":
            config.prior.file = str(path)
        else:
            config.prior.means = MEANS.tolist()
            config.prior.variances = 4.0
            config.prior.weights = weights.tolist()
        configuration.validate_config(config)
        built.append(configuration.build_prior(config, K))
    _, _, checked = priors.check_prior_arrays(MEANS, 4.0, weights)
    np.testing.assert_allclose(checked, expected, rtol=1e-12)
    for prior in built + [priors.prior_from_arrays(priors.prior_to_arrays(built[0]))]:
        np.testing.assert_allclose(np.asarray(prior.weights), expected, rtol=2e-6)
        np.testing.assert_allclose(np.exp(np.asarray(prior.log_weights)), expected, rtol=2e-6)
    with pytest.raises(priors.PriorError, match="weights must sum to 1"):
        priors.check_prior_arrays(MEANS, 4.0, np.r_[[0.1] * 9, 0.102])


# --- one restore path, without the data (issue 20 item 4) -------------------------------------


def test_restore_needs_no_data(workdir):
    """The run was trained on arrays passed from Python (no files for config.data): its
    spec comes from the record alone: 10 named classes, 28x28x1 images, 20 labels a class
    of 1 200 images (200 labelled, 1 000 unlabelled), the custom prior as configured."""
    from exon_jax import saved_run

    restored = saved_run.restore(workdir, read_only=True)
    spec = restored.spec
    assert spec.dataset.class_names == NAMES and spec.image_shape == (28, 28, 1)
    assert (spec.dataset.num_labelled, spec.dataset.num_unlabelled) == (200, 1000)
    assert restored.epoch == 2 and restored.skipped == []
    np.testing.assert_array_equal(np.asarray(spec.hparams.prior.means)[0], np.float32(MEANS))
    np.testing.assert_array_equal(
        np.asarray(spec.hparams.prior.variances)[0], np.float32(VARIANCES)
    )
    assert np.asarray(restored.states.step)[0] > 0


def test_restore_of_a_record_without_split_sizes(workdir, tmp_path):
    """A run recorded before the split sizes were kept still restores (the batch sizes
    stand in for them) to the same states."""
    from exon_jax import saved_run

    old = str(tmp_path / "old")
    shutil.copytree(workdir, old)
    path = os.path.join(old, "record.json")
    with open(path) as f:
        record = json.load(f)
    del record["split"]
    with open(path, "w") as f:
        json.dump(record, f)
    restored = saved_run.restore(old, read_only=True)
    assert (restored.spec.dataset.num_labelled, restored.spec.dataset.num_unlabelled) == (
        100,
        500,
    )  # small_mnist_config's batches
    again = saved_run.restore(workdir, read_only=True)
    for a, b in zip(jax.tree.leaves(restored.states.params), jax.tree.leaves(again.states.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_embed_mode_writes_the_test_sets_codes(workdir, dataset, run):
    """`exon_jax.embed` (`main.py --mode=embed`): the run's test set, each image's code the
    posterior mean of its most probable component, and its predictions the ones whose error
    evaluation wrote to results.json."""
    (path,) = exon_jax.embed(workdir, dataset=dataset, progress=False)
    assert path == os.path.join(workdir, "codes.npz")
    with np.load(path) as stored:
        codes, probs, labels = stored["codes"], stored["probs"], stored["labels"]
        predicted, names = stored["predicted"], stored["class_names"]
    test = dataset.test
    np.testing.assert_array_equal(labels, test.labels)
    assert tuple(names) == NAMES and codes.shape == (len(test.labels), D)
    enc_probs, enc_means, _ = run.encode(test.images)
    np.testing.assert_allclose(probs, enc_probs, rtol=1e-6)
    np.testing.assert_array_equal(predicted, np.argmax(enc_probs, axis=-1))
    np.testing.assert_allclose(codes, enc_means[np.arange(len(labels)), predicted], rtol=1e-6)
    with open(os.path.join(workdir, "results.json")) as f:
        error = json.load(f)["models"][0]["classification_error"]
    assert math.isclose(float(np.mean(predicted != labels)), error, abs_tol=1e-6)
