"""exon_jax.backend: the bfloat16 start-up note, from a /proc/cpuinfo written here."""

import warnings

import pytest

from exon_jax import backend

FLAGS_NO_BF16 = "fpu vme sse sse2 avx avx2 fma avx512f avx512_vnni"


def _cpuinfo(tmp_path, flags: str | None) -> str:
    path = tmp_path / "cpuinfo"
    lines = ["processor\t: 0", "model name\t: Some CPU"]
    if flags is not None:
        lines.append(f"flags\t\t: {flags}")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.mark.parametrize(
    "flags, expected",
    [
        (FLAGS_NO_BF16, False),
        (FLAGS_NO_BF16 + " avx512_bf16", True),
        (FLAGS_NO_BF16 + " amx_tile amx_bf16", True),
        (None, None),  # no flags line (not x86 Linux): cannot tell
    ],
)
def test_cpu_has_bf16_reads_the_flags_line(tmp_path, flags, expected):
    assert backend.cpu_has_bf16(_cpuinfo(tmp_path, flags)) is expected


def test_cpu_has_bf16_without_the_file(tmp_path):
    assert backend.cpu_has_bf16(str(tmp_path / "absent")) is None


def test_bf16_note_only_for_bfloat16_on_a_cpu_without_it(tmp_path):
    without = _cpuinfo(tmp_path, FLAGS_NO_BF16)
    note = backend.bf16_note("bfloat16", "cpu", without)
    assert note is not None and "bfloat16" in note and "slower" in note
    assert backend.bf16_note("float32", "cpu", without) is None
    assert backend.bf16_note("bfloat16", "gpu", without) is None
    assert backend.bf16_note("bfloat16", "tpu", without) is None
    with_bf16 = _cpuinfo(tmp_path, FLAGS_NO_BF16 + " avx512_bf16")
    assert backend.bf16_note("bfloat16", "cpu", with_bf16) is None
    assert backend.bf16_note("bfloat16", "cpu", str(tmp_path / "absent")) is None


def test_warn_bf16_warns_once_per_call(monkeypatch):
    monkeypatch.setattr(backend, "cpu_has_bf16", lambda cpuinfo="/proc/cpuinfo": False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        backend.warn_bf16("bfloat16", "cpu")
        backend.warn_bf16("float32", "cpu")
        backend.warn_bf16("bfloat16", "gpu")
    assert len(caught) == 1 and "bfloat16" in str(caught[0].message)
