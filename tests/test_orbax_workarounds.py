"""Orbax's workarounds are installed by the first `make_manager`, not by importing
exon_jax.ops.checkpoints, and `show_orbax_logs()` before it keeps Orbax's records visible."""

import subprocess
import sys
import textwrap


def _run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def test_import_changes_nothing_and_make_manager_installs(tmp_path):
    out = _run(
        f"""
        import logging
        from orbax.checkpoint._src import asyncio_utils
        original = asyncio_utils._run_sync_via_new_loop
        from exon_jax.ops import checkpoints
        absl = logging.getLogger("absl")
        print(asyncio_utils._run_sync_via_new_loop is original, checkpoints._ORBAX_FILTER in absl.filters)
        checkpoints.make_manager({str(tmp_path / "ckpt")!r})
        print(asyncio_utils._run_sync_via_new_loop is checkpoints._run_sync_via_new_loop,
              checkpoints._ORBAX_FILTER in absl.filters)
        """
    )
    assert out.splitlines() == ["True False", "True True"]


def test_logs_shown_before_the_first_manager_stay_shown(tmp_path):
    out = _run(
        f"""
        import logging
        from exon_jax.ops import checkpoints
        checkpoints.show_orbax_logs()
        checkpoints.make_manager({str(tmp_path / "ckpt")!r})
        print(checkpoints._ORBAX_FILTER in logging.getLogger("absl").filters)
        """
    )
    assert out == "False"
