"""Starting TensorFlow: quietly, once, with the threads asked for.

Training, export and the benchmark's Keras reference start TensorFlow through here; the
device runtime never does. TensorFlow fixes its thread pools at its first op and, since 2.21,
logs start-up notes before ``TF_CPP_MIN_LOG_LEVEL`` applies, so both happen in one place.
"""

from __future__ import annotations

import os

from runtime.quiet import native_stderr_silenced


def import_tensorflow(threads: int | None = None) -> str:
    """Import TensorFlow and Keras without their native start-up lines; returns the threading
    that applies (``threads`` intra-op threads if TensorFlow had not started yet)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with native_stderr_silenced():
        import keras  # noqa: F401
        import tensorflow as tf

        applied = "TensorFlow defaults"
        if threads is not None:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(threads)
                tf.config.threading.set_inter_op_parallelism_threads(1)
                applied = f"intra_op={threads}, inter_op=1"
            except RuntimeError:  # already running in this process (e.g. under pytest)
                applied = "unchanged: TensorFlow had started before"
        tf.constant(0) + 0  # device set-up logs on the first op, not at import
    return applied
