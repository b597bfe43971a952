"""Runs the TensorFlow/Keras reference step on request, so that it can be timed interleaved
with exon_jax epoch by epoch (bench/speed_paths.py).

Runs under the TensorFlow reference venv (NOT exon_jax's): imports the refbench script
(`tf_keras_step.py`, given by path) and uses its own model, loss, optimiser and step
builders unchanged, on its fixed random batch, in a long-lived process:

  <tf python> bench/tf_driver.py --refbench <tf_keras_step.py> [--xla]

Protocol (one JSON object per line on stdout): first {"ready": ..., "version", "warmup_s"}
after compilation and 5 warm-up steps; then for every line "N" read from stdin, N steps
are run and synchronised and {"steps": N, "seconds": s} is printed. EOF ends it.
"""

import argparse
import importlib.util
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--refbench", required=True, help="path of tf_keras_step.py")
    ap.add_argument("--xla", action="store_true", help="tf.function(jit_compile=True)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    spec = importlib.util.spec_from_file_location("tf_keras_step", args.refbench)
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)

    import keras
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    encoder_cls, decoder_cls = ref.build(tf, keras)
    loss_from_noise, sample_noise = ref.make_loss(tf)
    rng = np.random.default_rng(123)  # as tf_keras_step.main
    x = tf.constant(rng.uniform(0.0, 1.0, size=(ref.N, ref.D_IN)).astype(np.float32))
    onehot = tf.constant(np.eye(ref.K, dtype=np.float32)[rng.integers(0, ref.K, size=(ref.L,))])
    tf.random.set_seed(0)
    enc, dec, opt, tvars = ref.make_model(tf, keras, encoder_cls, decoder_cls)
    step = ref.make_step(tf, loss_from_noise, sample_noise, enc, dec, opt, tvars, args.xla)
    lam = (tf.constant(ref.LAMBDA1), tf.constant(ref.LAMBDA2))
    t0 = time.perf_counter()
    for _ in range(5):
        loss = step(x, onehot, *lam)
    float(loss)
    print(
        json.dumps(
            {
                "ready": True,
                "xla": args.xla,
                "warmup_s": time.perf_counter() - t0,
                "version": f"tensorflow {tf.__version__}, keras {keras.__version__}",
            }
        ),
        flush=True,
    )
    for line in sys.stdin:
        n = int(line)
        t0 = time.perf_counter()
        for _ in range(n):
            loss = step(x, onehot, *lam)
        value = float(loss)  # sync
        print(
            json.dumps({"steps": n, "seconds": time.perf_counter() - t0, "loss": value}), flush=True
        )


if __name__ == "__main__":
    main()
