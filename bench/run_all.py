"""Runs every benchmark in its own fresh process, then rewrites the README table.

  python bench/run_all.py [--quick] [--only a,b] [--table-only] [--no-readme]

Each script writes bench/results/<name>.json (its old JSON is removed first, so a failed
script shows as FAILED, never as stale figures). The table is built from the JSON
files' `table` rows, values copied unedited, and written between the markers
`<!-- bench:start -->` and `<!-- bench:end -->` of README.md (the marked section is
appended to README.md when the markers are absent). Without a README.md, or with
--no-readme, the table goes to bench/results/TABLE.md instead; it is printed either way.
bench/results/run_all.json records each script's wall time and exit status.

--quick passes --quick to every script (fewer repeats, smaller sweeps): the whole suite
is meant to finish in under 10 minutes on a 2-core CPU.
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

SCRIPTS = ("train_step", "profile_step", "epoch", "sweep", "compile", "cifar_step", "analysis",
           "tf_reference")


def run_scripts(names, quick: bool) -> list[dict]:
    os.makedirs(RESULTS_DIR, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    runs = []
    for name in names:
        path = os.path.join(RESULTS_DIR, f"{name}.json")
        if os.path.exists(path):
            os.remove(path)
        cmd = [sys.executable, os.path.join(BENCH_DIR, f"{name}.py")] + (["--quick"] if quick else [])
        print(f"== {name}: {' '.join(os.path.relpath(c, REPO_ROOT) if c.startswith(REPO_ROOT) else c for c in cmd)}",
              flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env)
        wall = time.perf_counter() - t0
        print(f"== {name}: exit {proc.returncode} after {wall:.1f} s", flush=True)
        runs.append({"script": name, "returncode": proc.returncode, "wall_s": round(wall, 2)})
    return runs


def load(name: str) -> dict | None:
    path = os.path.join(RESULTS_DIR, f"{name}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def build_table(names, runs: list[dict] | None, quick: bool | None) -> str:
    docs = {n: load(n) for n in names}
    machine = next((d["machine"] for d in docs.values() if d and "machine" in d), None)
    lines = []
    if machine:
        dates = sorted(d["machine"]["date_utc"] for d in docs.values() if d and "machine" in d)
        lines.append(
            f"Measured {dates[0]} to {dates[-1]} on {machine['cpu_model']}, "
            f"{machine['cpu_count']} cores, {machine['ram_gib']} GiB RAM, "
            f"jax/jaxlib {machine['jax']}/{machine['jaxlib']}, devices {', '.join(machine['devices'])}"
            + (" (`--quick`: fewer repeats)" if quick else "")
            + ". Figures copied unedited from `bench/results/*.json`.")
        lines.append("")
    lines.append("| benchmark | figure | value | unit | note |")
    lines.append("|---|---|---|---|---|")
    status = {r["script"]: r for r in runs or []}
    for name in names:
        doc = docs[name]
        if doc is None:
            why = (f"FAILED (exit {status[name]['returncode']})" if name in status
                   else "not run")
            lines.append(f"| {name} | | {why} | | |")
            continue
        for r in doc.get("table", []):
            lines.append(f"| {name} | {cell(r['metric'])} | {cell(r['value'])} | "
                         f"{cell(r.get('unit', ''))} | {cell(r.get('note', ''))} |")
    if runs:
        total = sum(r["wall_s"] for r in runs)
        lines.append("")
        lines.append("Suite wall time: " + ", ".join(f"{r['script']} {r['wall_s']} s" for r in runs)
                     + f"; total {round(total, 1)} s.")
    return "\n".join(lines) + "\n"


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
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats in every script")
    parser.add_argument("--only", default=None, help="comma-separated subset of " + ",".join(SCRIPTS))
    parser.add_argument("--table-only", action="store_true",
                        help="run nothing; rebuild the table from the existing JSON files")
    parser.add_argument("--no-readme", action="store_true",
                        help="write bench/results/TABLE.md even where README.md exists")
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",")] if args.only else list(SCRIPTS)
    unknown = [n for n in names if n not in SCRIPTS]
    if unknown:
        parser.error(f"unknown scripts {unknown}; choose from {SCRIPTS}")

    runs = None
    if not args.table_only:
        t0 = time.perf_counter()
        runs = run_scripts(names, args.quick)
        total = time.perf_counter() - t0
        with open(os.path.join(RESULTS_DIR, "run_all.json"), "w") as f:
            json.dump({"quick": args.quick, "total_wall_s": round(total, 2), "runs": runs}, f,
                      indent=2)
            f.write("\n")
    else:
        previous = os.path.join(RESULTS_DIR, "run_all.json")
        if os.path.exists(previous):
            with open(previous) as f:
                saved = json.load(f)
            runs, args.quick = saved.get("runs"), saved.get("quick", args.quick)
    table = build_table(list(SCRIPTS) if not args.only else names, runs, args.quick)
    where = write_table(table, use_readme=not args.no_readme)
    print(table, end="")
    print(f"table written to {os.path.relpath(where, REPO_ROOT)}")
    failed = [r["script"] for r in runs or [] if r["returncode"] != 0]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
