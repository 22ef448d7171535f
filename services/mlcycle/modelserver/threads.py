"""TensorFlow's thread pools: ``--tensorflow_{intra,inter}_op_parallelism``.

TF Serving puts them in each model's session config; TensorFlow 2 has one
runtime per process, so here they size the process's pools, before the first
model loads. 0 (the default) leaves the choice to TensorFlow, as in TF Serving.

Small models on few cores are where they matter: with TensorFlow's choice (one
thread per core in each pool) a call's ops are handed between pool threads
that spin while they wait for more. For mlcycle's model on two cores, ``1`` and
``1`` cut the CPU of a one-row call by a quarter and of a 64-row call by 40%,
and concurrent calls answer at least as many rows per second as with the
defaults; on more cores, a larger inter-op pool lets more calls run at once.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def configure(*, intra_op: int, inter_op: int) -> None:
    """Size TensorFlow's pools (0: TensorFlow's choice); warns when it is too late to."""
    import tensorflow as tf

    for what, wanted, current, setter in (
        (
            "intra_op",
            intra_op,
            tf.config.threading.get_intra_op_parallelism_threads,
            tf.config.threading.set_intra_op_parallelism_threads,
        ),
        (
            "inter_op",
            inter_op,
            tf.config.threading.get_inter_op_parallelism_threads,
            tf.config.threading.set_inter_op_parallelism_threads,
        ),
    ):
        if wanted <= 0:
            continue
        try:
            setter(wanted)
        except RuntimeError:  # TensorFlow already ran something in this process
            if current() != wanted:
                log.warning(
                    "--tensorflow_%s_parallelism=%d cannot apply: TensorFlow is already "
                    "running in this process with %d",
                    what,
                    wanted,
                    current(),
                )
            continue
        log.info("TensorFlow %s parallelism: %d threads", what, wanted)
