"""The operations wing, apart from the research code: what keeps a run alive and accounted
for. `checkpoints` (Orbax, checksums, fall-back to the newest good one), `run_record`
(config, data hash, code identity), `workdir_lock`, `preemption` (stop signals),
`peer_watch` (a hung peer), `timing` (phases), `writers` (metrics.jsonl, TensorBoard),
`figure_workers` (Matplotlib processes), `host_allocator` (glibc malloc settings for XLA:CPU),
`xla_flags` (XLA:CPU compiler flags set before the backend starts).
"""
