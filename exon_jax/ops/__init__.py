"""The operations wing: what keeps a run alive and accounted for, apart from the
research code (checkpoints and their integrity, the workdir lock, the host allocator,
phase timing, preemption).
"""
