"""Speed benchmarks of exon_jax, run from the repository root as `python -m bench.<name>`
(`python -m bench.run_all` runs them all; see bench/README.md). Not part of the wheel."""
