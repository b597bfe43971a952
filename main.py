"""EXoN training, evaluation and analysis from the command line.

  python main.py                                       # the paper's MNIST run (configs/mnist.py)
  python main.py --config=configs/mnist.py --config.train.epochs=5 --workdir=workdirs/quick
  python main.py --mode=evaluate --workdir=workdirs/mnist    # restore, rewrite results.json
  python main.py --mode=analyze --workdir=workdirs/mnist     # restore, rewrite figures/
"""
import os

from absl import app, flags, logging
from ml_collections import config_flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "mnist.py"),
    "Experiment config file (a python file with get_config()).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "workdirs/mnist", "Directory for checkpoints, "
                               "metrics, results and figures.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "evaluate", "analyze"],
                          "train (resumes from workdir), evaluate or analyze a checkpoint.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    import jax
    if os.environ.get("EXON_DISTRIBUTED"):
        jax.distributed.initialize()
    from exon_jax import experiment
    config = _CONFIG.value
    if _MODE.value == "train":
        results = experiment.train_and_evaluate(config, _WORKDIR.value)
    elif _MODE.value == "evaluate":
        given = flags.FLAGS["config"].present
        results = experiment.evaluate(config if given else None, _WORKDIR.value)
    else:
        given = flags.FLAGS["config"].present
        experiment.analyze(config if given else None, _WORKDIR.value)
        print(f"figures written to {os.path.join(_WORKDIR.value, 'figures')}")
        return
    for model in results["models"]:
        print(f"{model['name']}: test error {model['classification_error']:.4f}, "
              f"KL {model['kl']:.3f}, negative SSIM {model['negative_ssim']:.4f}, "
              f"max centre distance {model['max_centre_distance_sd']:.2f} sd, beta {model['beta']:.4g}")
    print(f"results in {os.path.join(_WORKDIR.value, 'results.json')}")


if __name__ == "__main__":
    app.run(main)
