"""Checkpoints: damaged ones are skipped with a reason, failed saves leave nothing, NaN never saved.

Every damage case checks three things: which epoch restores, that its arrays are the
ones saved (bit for bit), and that Orbax/tensorstore wrote nothing on stderr.
"""

import errno
import glob
import os
import shutil
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from orbax.checkpoint._src.handlers import json_checkpoint_handler

from exon_jax.ops import checkpoints as ckpt
from exon_jax import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_state(epoch, rows=200):
    """A TrainState whose every array depends on `epoch`; w is [rows, 50] random floats."""
    keys = jax.random.split(jax.random.key(epoch), 3)
    w = jax.random.normal(keys[0], (rows, 50))
    return train.TrainState(
        step=jnp.int32(epoch),
        params={"model": {"w": w, "b": jnp.full((5,), float(epoch))}},
        batch_stats={},
        opt_state=(jnp.zeros_like(w) + epoch, jnp.ones((3,), jnp.bfloat16)),
        key=keys[1],
        beta=jnp.float32(0.5 * epoch),
    )


def assert_same(a, b):
    a, b = ckpt._keys_to_data(a), ckpt._keys_to_data(b)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def write_run(directory, epochs=(1, 2, 3)):
    manager = ckpt.make_manager(str(directory))
    for epoch in epochs:
        ckpt.save(manager, epoch, make_state(epoch), {"epoch": epoch, "note": [1.5, "x"]})
    return manager


def array_file(directory, epoch):
    """The biggest data file of checkpoint `epoch`: it holds the [200, 50] array's bytes."""
    files = glob.glob(
        os.path.join(str(directory), str(epoch), "state", "**", "d", "*"), recursive=True
    )
    return max(files, key=os.path.getsize)


def flip_byte(path):
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x01
    open(path, "wb").write(bytes(data))


def truncate(path):
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])


def test_roundtrip_is_bit_exact_and_meta_is_returned_as_saved(tmp_path):
    manager = write_run(tmp_path, epochs=(1, 2))
    state, meta, epoch, skipped = ckpt.restore_latest(manager, make_state(0))
    manager.close()
    assert (epoch, skipped, meta) == (2, [], {"epoch": 2, "note": [1.5, "x"]})
    assert_same(state, make_state(2))
    assert jax.dtypes.issubdtype(state.key.dtype, jax.dtypes.prng_key)
    # a directory works as well as a manager
    state, _, epoch, _ = ckpt.restore_latest(str(tmp_path), jax.eval_shape(lambda: make_state(0)))
    assert epoch == 2
    assert_same(state, make_state(2))


# (damage applied to the checkpoint directory, epoch that must restore, reason fragment)
DAMAGE = {
    "flipped_array_byte": (
        lambda d: flip_byte(array_file(d, 3)),
        2,
        "array data of params/model/w do not match the checksums",
    ),
    "truncated_array_file": (
        lambda d: truncate(array_file(d, 3)),
        2,
        "truncated file state (array params.model.w)",
    ),
    "deleted_array_file": (
        lambda d: os.remove(array_file(d, 3)),
        2,
        "unreadable data in state (array params.model.w)",
    ),
    "deleted_meta": (
        lambda d: shutil.rmtree(os.path.join(d, "3", "meta")),
        2,
        "incomplete: no meta item",
    ),
    "stray_empty_dir": (lambda d: os.makedirs(os.path.join(d, "30")), 3, "empty directory"),
    "half_written_tmp_dir": (
        lambda d: shutil.copytree(
            os.path.join(d, "3", "state"), os.path.join(d, "4.orbax-checkpoint-tmp", "state")
        ),
        3,
        None,
    ),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_newest_falls_back_quietly_and_later_saves_land(tmp_path, capfd, case):
    damage, expected_epoch, reason = DAMAGE[case]
    write_run(tmp_path).close()
    capfd.readouterr()
    damage(str(tmp_path))
    manager = ckpt.make_manager(str(tmp_path))
    state, meta, epoch, skipped = ckpt.restore_latest(manager, make_state(0))
    assert epoch == expected_epoch and meta["epoch"] == expected_epoch
    assert_same(state, make_state(expected_epoch))
    if reason is None:
        assert skipped == []
    else:
        ((bad_epoch, message),) = skipped
        assert bad_epoch in (3, 30) and reason in message, message
        assert "\n" not in message and f"moved to {tmp_path.name}/damaged/{bad_epoch}" in message
        assert os.path.isdir(tmp_path / "damaged" / str(bad_epoch))
    # the next epoch saves (Orbax skips, silently, any step at or below its newest one)
    ckpt.save(manager, expected_epoch + 1, make_state(7), {"epoch": expected_epoch + 1})
    assert manager.latest_step() == expected_epoch + 1
    manager.close()
    state, _, epoch, skipped = ckpt.restore_latest(str(tmp_path), make_state(0))
    assert (epoch, skipped) == (expected_epoch + 1, [])
    assert_same(state, make_state(7))
    assert not glob.glob(str(tmp_path / "*orbax-checkpoint-tmp*"))
    out, err = capfd.readouterr()
    assert err == "", err


def test_tmp_dirs_are_left_alone_while_another_process_holds_the_workdir(tmp_path):
    """`--mode=evaluate` beside a training run must not delete the run's save in progress."""
    from tests.test_workdir_lock import start_holder

    directory = tmp_path / "checkpoints"
    write_run(directory, epochs=(1,)).close()
    (directory / "2.orbax-checkpoint-tmp").mkdir()
    holder = start_holder(tmp_path)
    try:
        ckpt.make_manager(str(directory)).close()
        assert (directory / "2.orbax-checkpoint-tmp").is_dir()
    finally:
        holder.kill()
        holder.wait()
    ckpt.make_manager(str(directory)).close()
    assert sorted(os.listdir(directory)) == ["1"]


def test_every_checkpoint_damaged_is_one_line_listing_each(tmp_path, capfd):
    write_run(tmp_path, epochs=(1, 2)).close()
    os.remove(array_file(tmp_path, 2))
    truncate(array_file(tmp_path, 1))
    with pytest.raises(ckpt.CheckpointError) as info:
        ckpt.restore_latest(str(tmp_path), make_state(0))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(
        f"no checkpoint in {tmp_path} restores: 2: unreadable data in state (array params.model.w)"
    )
    assert "; 1: truncated file state (array params.model.w)" in message
    assert sorted(os.listdir(tmp_path)) == ["1", "2"]  # nothing set aside when none restores
    assert capfd.readouterr().err == ""


def test_no_checkpoint_and_wrong_shape_are_one_line(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint in .*: train first"):
        ckpt.restore_latest(str(tmp_path), make_state(0))
    write_run(tmp_path, epochs=(1,)).close()
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint in .* restores: 1: "):
        ckpt.restore_latest(str(tmp_path), make_state(0, rows=7))
    assert os.listdir(tmp_path) == ["1"]


def test_checkpoint_without_checksums_still_restores(tmp_path):
    """Checkpoints written before checksums existed (plain Orbax save) are read as they are."""
    manager = ocp.CheckpointManager(str(tmp_path))
    manager.save(
        5,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(ckpt._keys_to_data(make_state(5))),
            meta=ocp.args.JsonSave({"epoch": 5}),
        ),
    )
    manager.wait_until_finished()
    manager.close()
    state, meta, epoch, _ = ckpt.restore_latest(str(tmp_path), make_state(0))
    assert (epoch, meta) == (5, {"epoch": 5})
    assert_same(state, make_state(5))


def test_non_finite_state_is_refused_naming_the_leaves(tmp_path):
    manager = write_run(tmp_path, epochs=(1,))
    state = make_state(2)
    state = state.replace(
        params={
            "model": {
                "w": state.params["model"]["w"].at[3, 4].set(jnp.nan),
                "b": state.params["model"]["b"],
            }
        },
        opt_state=(state.opt_state[0], state.opt_state[1].at[0].set(jnp.inf)),
    )
    with pytest.raises(ckpt.NonFiniteStateError) as info:
        ckpt.save(manager, 2, state, {"epoch": 2})
    assert isinstance(info.value, ckpt.CheckpointError)
    assert str(info.value) == (
        f"refusing to save checkpoint 2 in {tmp_path}: non-finite values "
        "in params/model/w, opt_state/1; the last good checkpoint is "
        "epoch 1"
    )
    assert manager.all_steps() == [1] and sorted(os.listdir(tmp_path)) == ["1"]
    manager.close()


def test_failed_write_is_one_error_and_leaves_no_step(tmp_path, monkeypatch, capfd):
    """The meta write (in an Orbax commit thread, after the arrays) fails with ENOSPC."""
    manager = write_run(tmp_path, epochs=(1, 2))
    capfd.readouterr()

    async def no_space(self, item, directory):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(directory / "metadata"))

    monkeypatch.setattr(json_checkpoint_handler.JsonCheckpointHandler, "_save_fn", no_space)
    with pytest.raises(ckpt.CheckpointError) as info:
        ckpt.save(manager, 3, make_state(3), {"epoch": 3}, last_good=2)
    assert str(info.value) == (
        f"cannot save checkpoint 3 in {tmp_path}: no space left on "
        "device (ENOSPC); the last good checkpoint is epoch 2"
    )
    assert sorted(os.listdir(tmp_path)) == ["1", "2"]
    assert manager.all_steps() == [1, 2]
    monkeypatch.undo()
    ckpt.save(manager, 3, make_state(3), {"epoch": 3})  # the same manager saves again
    manager.close()
    state, _, epoch, _ = ckpt.restore_latest(str(tmp_path), make_state(0))
    assert epoch == 3
    assert_same(state, make_state(3))
    assert capfd.readouterr().err == ""


# A script saving epoch 1 (small) then epoch 2 (big, does not fit); prints what it sees.
_SAVE_TOO_BIG = textwrap.dedent("""
    import os, resource, signal, sys
    sys.path.insert(0, {root!r})
    import jax, jax.numpy as jnp
    from exon_jax.ops import checkpoints as ckpt
    directory = sys.argv[1]
    manager = ckpt.make_manager(directory)
    ckpt.save(manager, 1, {{"w": jnp.ones((10,))}}, {{"epoch": 1}})
    if {fsize_limit}:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # write() then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, ({fsize_limit}, {fsize_limit}))
    try:
        ckpt.save(manager, 2, {{"w": jax.random.normal(jax.random.key(0), (200, 1000))}},
                  {{"epoch": 2}})
    except ckpt.CheckpointError as error:
        print(error)
    print(sorted(os.listdir(directory)), manager.all_steps())
    manager.close()
""")


def run_script(script, *args, prefix=()):
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [*prefix, sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.mark.slow  # a second process (checkpoint-write infrastructure)
def test_native_write_failure_is_one_line_in_a_real_process(tmp_path):
    """tensorstore's own write fails (file size limit, EFBIG): one line, nothing on stderr."""
    script = _SAVE_TOO_BIG.format(root=ROOT, fsize_limit=100_000)
    out = run_script(script, str(tmp_path / "c"))
    assert out.returncode == 0 and out.stderr == "", out.stderr[-3000:]
    error, listing = out.stdout.strip().splitlines()
    assert error == (
        f"cannot save checkpoint 2 in {tmp_path / 'c'}: file too large (EFBIG); "
        "the last good checkpoint is epoch 1"
    )
    assert listing == "['1'] [1]"


def _can_mount_tmpfs():
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True
    )
    return probe.returncode == 0


@pytest.mark.slow  # a second process in its own mount namespace (infrastructure)
@pytest.mark.skipif(not _can_mount_tmpfs(), reason="no user namespaces to mount a tmpfs in")
def test_full_disk_is_one_line_in_a_real_process(tmp_path):
    """A 300 kB tmpfs (in a private mount namespace) fills during the second save."""
    mount = tmp_path / "disk"
    mount.mkdir()
    script = _SAVE_TOO_BIG.format(root=ROOT, fsize_limit=0)
    out = run_script(
        script,
        str(mount / "c"),
        prefix=(
            "unshare",
            "-rm",
            "sh",
            "-c",
            f'mount -t tmpfs -o size=300k tmpfs {mount} && exec "$@"',
            "sh",
        ),
    )
    assert out.returncode == 0 and out.stderr == "", out.stderr[-3000:]
    error, listing = out.stdout.strip().splitlines()
    assert error == (
        f"cannot save checkpoint 2 in {mount / 'c'}: no space left on device "
        "(ENOSPC); the last good checkpoint is epoch 1"
    )
    assert listing == "['1'] [1]"


# --- the checksum itself, against a NumPy oracle ---------------------------------------------


def _np_mix(h):
    h = h.astype(np.uint64)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    return h ^ (h >> 16)


def _np_checksum(x):
    x = np.ascontiguousarray(x).ravel()
    words = (
        x.astype(np.uint64)
        if x.dtype == np.bool_
        else x.view({1: np.uint8, 2: np.uint16, 4: np.uint32}[x.dtype.itemsize]).astype(np.uint64)
    )
    index = np.arange(words.size, dtype=np.uint64)
    return int(_np_mix(words ^ _np_mix((index + 0x9E3779B9) & 0xFFFFFFFF)).sum() % 2**32)


@pytest.mark.parametrize(
    "x",
    [
        np.linspace(-3, 3, 37, dtype=np.float32).reshape(37, 1),
        np.arange(-5, 7, dtype=np.int32),
        np.array([[1, 2], [3, 4]], np.uint32),
        np.array([True, False, True]),
        np.array([250, 3, 7], np.uint8),
        np.asarray(jnp.linspace(-1, 1, 9, dtype=jnp.bfloat16)),
    ],
)
def test_checksum_matches_numpy_oracle(x):
    assert int(ckpt._checksum(jnp.asarray(x))) == _np_checksum(x)


def test_every_single_bit_flip_changes_the_checksum():
    x = np.asarray([1.0, -2.5, 3e-7, 0.0], np.float32)
    checksum = jax.jit(ckpt._checksum)
    base = int(checksum(jnp.asarray(x)))
    bits = x.view(np.uint32)
    for i in range(x.size):
        for b in range(32):
            flipped = bits.copy()
            flipped[i] ^= np.uint32(1 << b)
            assert int(checksum(jnp.asarray(flipped.view(np.float32)))) != base, (i, b)
    # the same values elsewhere in the array are a different array
    assert int(checksum(jnp.asarray(x[::-1].copy()))) != base


def test_inspect_state_of_a_local_state_is_numpy_and_compiles_nothing(monkeypatch):
    """A state on this process is checked on the host (its save compiles no program: the
    jitted reduction cost 1.1 s of XLA:CPU compilation a run); the values are the jitted
    reduction's, the one that states sharded over processes still use."""
    rng = np.random.default_rng(5)
    state = {
        "w": jnp.asarray(rng.normal(size=(6, 5)), jnp.float32),
        "nan": jnp.asarray([1.0, np.nan, 2.0], jnp.float32),
        "inf": jnp.asarray([np.inf], jnp.bfloat16),
        "step": jnp.int32(7),
        "key": jax.random.key(3),
    }
    jitted = ckpt._inspect
    calls = []
    monkeypatch.setattr(ckpt, "_inspect", lambda leaves: calls.append(1) or jitted(leaves))
    finite, sums = ckpt.inspect_state(state)
    assert calls == []
    expected_finite, expected_sums = jitted(
        [jnp.asarray(x) for x in jax.tree.leaves(ckpt._keys_to_data(state))]
    )
    names = ckpt.leaf_names(ckpt._keys_to_data(state))
    assert list(finite) == names and list(sums) == names
    assert [finite[n] for n in names] == [bool(f) for f in np.asarray(expected_finite)]
    assert [sums[n] for n in names] == [int(s) for s in np.asarray(expected_sums)]
    non_finite = sorted(n for n in names if "nan" in n or "inf" in n)
    assert len(non_finite) == 2
    assert sorted(n for n in names if not finite[n]) == non_finite
