"""Runs every benchmark in its own fresh process, then rewrites the README table.

  python -m bench.run_all [--quick] [--only a,b] [--table-only] [--no-readme] [--machine ID]

Each script writes bench/results/<machine id>/<name>.json (`common.machine_id`: CPU model,
family/model numbers, matmul flags, cores). Before a script runs, its old JSON of THIS
machine is removed (a failed script shows as FAILED, never as stale figures); results of
other machines are never touched.

The table is built from the JSON files' `table` rows, values copied unedited: one table
per machine, each headed by that machine's description and dates, every row naming the
machine in its first column. A table never mixes machines: a JSON file whose own
`machine` record does not match the folder it lies in is refused (reported, not shown),
as are JSON files lying directly in bench/results/. --machine ID (or `this`) restricts
the output to one machine. The tables go between the markers `<!-- bench:start -->` and
`<!-- bench:end -->` of README.md (the marked section is appended to README.md when the
markers are absent); without a README.md, or with --no-readme, to bench/results/TABLE.md.
bench/results/<machine id>/run_all.json records each script's wall time and exit status.

--quick passes --quick to every script (fewer repeats, smaller sweeps): the whole suite
is meant to finish in under 10 minutes on a 2-core CPU.

The TensorFlow reference (tf_reference.py) finds its interpreter from the environment
(TFREF_PYTHON, or TFREF = the reference venv's folder) and the refbench script from
REFBENCH_SCRIPT or the repository layout (../shared/refbench beside the checkout).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
RESULTS_DIR = os.path.join(BENCH_DIR, "results")
README = os.path.join(REPO_ROOT, "README.md")
START, END = "<!-- bench:start -->", "<!-- bench:end -->"

SCRIPTS = (
    "train_step",
    "profile_step",
    "epoch",
    "sweep",
    "compile",
    "cifar_step",
    "analysis",
    "tf_reference",
    "speed_paths",
)


def this_machine() -> str:
    """The machine id of this machine, from bench/common.py (imports jax)."""
    from bench import common

    return common.this_machine_id()


def machine_id_of(described: dict) -> str:
    from bench import common

    return common.machine_id(described)


def run_scripts(names, quick: bool, machine: str) -> list[dict]:
    folder = os.path.join(RESULTS_DIR, machine)
    os.makedirs(folder, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    runs = []
    for name in names:
        path = os.path.join(folder, f"{name}.json")
        if os.path.exists(path):
            os.remove(path)
        cmd = [sys.executable, "-m", f"bench.{name}"] + (["--quick"] if quick else [])
        print(f"== {name}: {' '.join(cmd)}", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env)
        wall = time.perf_counter() - t0
        print(f"== {name}: exit {proc.returncode} after {wall:.1f} s", flush=True)
        runs.append({"script": name, "returncode": proc.returncode, "wall_s": round(wall, 2)})
    return runs


def load_results(names) -> tuple[dict[str, dict[str, dict]], list[str]]:
    """{machine id: {script: JSON}} from bench/results/<machine id>/, and the files refused.

    A file is refused when its own `machine` record gives another id than its folder's
    (figures of one machine filed under another), when it has no machine record, or when
    it lies directly in bench/results/ (older layout: move it into its machine's folder).
    """
    by_machine: dict[str, dict[str, dict]] = {}
    refused: list[str] = []
    if not os.path.isdir(RESULTS_DIR):
        return by_machine, refused
    for entry in sorted(os.listdir(RESULTS_DIR)):
        path = os.path.join(RESULTS_DIR, entry)
        if entry.endswith(".json") and os.path.isfile(path):
            refused.append(f"bench/results/{entry}: not in a machine folder")
            continue
        if not os.path.isdir(path):
            continue
        for name in names:
            file = os.path.join(path, f"{name}.json")
            if not os.path.exists(file):
                continue
            with open(file) as f:
                doc = json.load(f)
            recorded = doc.get("machine")
            if not recorded:
                refused.append(f"bench/results/{entry}/{name}.json: no machine record")
                continue
            measured_on = machine_id_of(recorded)
            if measured_on != entry:
                refused.append(
                    f"bench/results/{entry}/{name}.json: measured on {measured_on}, not {entry}"
                )
                continue
            by_machine.setdefault(entry, {})[name] = doc
    return by_machine, refused


def load_runs(machine: str) -> dict | None:
    path = os.path.join(RESULTS_DIR, machine, "run_all.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def describe(machine: dict) -> str:
    numbers = ""
    if machine.get("cpu_family") is not None:
        numbers = (
            f" ({machine.get('cpu_vendor', '')} family {machine['cpu_family']} "
            f"model {machine.get('cpu_model_number')})"
        )
    flags = machine.get("cpu_flags") or []
    return (
        f"{machine['cpu_model']}{numbers}, {machine['cpu_count']} cores, "
        f"{machine['ram_gib']} GiB RAM, flags {' '.join(flags) or 'n/a'}, "
        f"jax/jaxlib {machine['jax']}/{machine['jaxlib']}, "
        f"devices {', '.join(machine['devices'])}"
    )


def machine_table(machine: str, docs: dict[str, dict], names, runs: dict | None) -> str:
    """One machine's table: a heading line, then one row per figure, machine id first."""
    first = next(iter(docs.values()))["machine"]
    dates = sorted(d["machine"]["date_utc"] for d in docs.values())
    quick = sorted({"quick" if d.get("quick") else "full" for d in docs.values()})
    loads = [d["machine"].get("loadavg_1_5_15_at_start") for d in docs.values()]
    loads = [l[0] for l in loads if l]
    lines = [
        f"Machine `{machine}`: {describe(first)}. Measured {dates[0]} to {dates[-1]}"
        f" ({'/'.join(quick)} repeats; 1-min load average at script start "
        f"{min(loads) if loads else 'n/a'} to {max(loads) if loads else 'n/a'}). "
        f"Figures copied unedited from `bench/results/{machine}/*.json`.",
        "",
        "| machine | benchmark | figure | value | unit | note |",
        "|---|---|---|---|---|---|",
    ]
    status = {r["script"]: r for r in (runs or {}).get("runs", [])}
    for name in names:
        doc = docs.get(name)
        if doc is None:
            if name in status:
                lines.append(
                    f"| {machine} | {name} | | FAILED (exit {status[name]['returncode']}) | | |"
                )
            continue
        for r in doc.get("table", []):
            lines.append(
                f"| {machine} | {name} | {cell(r['metric'])} | {cell(r['value'])} | "
                f"{cell(r.get('unit', ''))} | {cell(r.get('note', ''))} |"
            )
    if runs and runs.get("runs"):
        total = sum(r["wall_s"] for r in runs["runs"])
        lines.append("")
        lines.append(
            f"Suite wall time on `{machine}`: "
            + ", ".join(f"{r['script']} {r['wall_s']} s" for r in runs["runs"])
            + f"; total {round(total, 1)} s."
        )
    return "\n".join(lines) + "\n"


def build_table(names, only_machine: str | None = None, current: str | None = None) -> str:
    """One table per machine (never mixed), the current machine's first, then the others
    by their newest result; refused files listed at the end."""
    by_machine, refused = load_results(names)
    if only_machine is not None:
        by_machine = {m: d for m, d in by_machine.items() if m == only_machine}
    newest = {
        m: max(d["machine"]["date_utc"] for d in docs.values()) for m, docs in by_machine.items()
    }
    order = sorted(by_machine, key=lambda m: newest[m], reverse=True)
    order.sort(key=lambda m: m != current)  # stable: the current machine first
    parts = [machine_table(m, by_machine[m], names, load_runs(m)) for m in order]
    if not parts:
        parts = [
            "No benchmark results"
            + (f" for machine `{only_machine}`" if only_machine else "")
            + " in bench/results/.\n"
        ]
    if len(parts) > 1:
        parts.insert(
            0,
            f"{len(parts)} machines, one table each; compare figures only within "
            "a table (ratios measured in one run mean most).\n",
        )
    if refused:
        parts.append("Refused (not shown): " + "; ".join(refused) + ".\n")
    return "\n".join(parts)


def write_table(table: str, use_readme: bool) -> str:
    block = f"{START}\n{table}{END}"
    if use_readme and os.path.exists(README):
        with open(README) as f:
            text = f.read()
        if START in text and END in text and text.index(START) < text.index(END):
            head, rest = text.split(START, 1)
            _, tail = rest.split(END, 1)
            text = head + block + tail
        else:
            text = text.rstrip("\n") + "\n\n## Benchmarks\n\n" + block + "\n"
        with open(README, "w") as f:
            f.write(text)
        return README
    os.makedirs(RESULTS_DIR, exist_ok=True)
    path = os.path.join(RESULTS_DIR, "TABLE.md")
    with open(path, "w") as f:
        f.write(block + "\n")
    return path


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer repeats in every script")
    parser.add_argument(
        "--only", default=None, help="comma-separated subset of " + ",".join(SCRIPTS)
    )
    parser.add_argument(
        "--table-only",
        action="store_true",
        help="run nothing; rebuild the table from the existing JSON files",
    )
    parser.add_argument(
        "--no-readme",
        action="store_true",
        help="write bench/results/TABLE.md even where README.md exists",
    )
    parser.add_argument(
        "--machine",
        default=None,
        help="only this machine's table (a folder name of bench/results, or "
        "'this' for the machine running this command)",
    )
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",")] if args.only else list(SCRIPTS)
    unknown = [n for n in names if n not in SCRIPTS]
    if unknown:
        parser.error(f"unknown scripts {unknown}; choose from {SCRIPTS}")

    current = this_machine()
    only = current if args.machine == "this" else args.machine
    runs = None
    if not args.table_only:
        t0 = time.perf_counter()
        runs = run_scripts(names, args.quick, current)
        total = time.perf_counter() - t0
        with open(os.path.join(RESULTS_DIR, current, "run_all.json"), "w") as f:
            json.dump(
                {
                    "machine_id": current,
                    "quick": args.quick,
                    "total_wall_s": round(total, 2),
                    "runs": runs,
                },
                f,
                indent=2,
            )
            f.write("\n")
    table = build_table(list(SCRIPTS) if not args.only else names, only, current)
    where = write_table(table, use_readme=not args.no_readme)
    print(table, end="")
    print(f"table written to {os.path.relpath(where, REPO_ROOT)}")
    failed = [r["script"] for r in runs or [] if r["returncode"] != 0]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
