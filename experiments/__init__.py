"""Scripts that restore a run's checkpoints and rebuild the paper's figures and tables.

Each script has a `main(workdir, out=None, dataset=None) -> dict` function (tests call
it with generated data) and a thin command-line wrapper; none of them trains.
"""
