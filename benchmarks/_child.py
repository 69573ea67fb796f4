"""One cold start, in a fresh process: ``python -m benchmarks._child --model FILE ...``.

Timed from the parent's spawn to the first prediction, split into interpreter start-up,
imports, model load and first prediction; then the process's peak RSS. Prints one JSON line.
A runtime child that finds TensorFlow in ``sys.modules`` exits 3: the device runtime must
never pull it in, and a cold start measured with it would be wrong.
"""

import time  # first, so the start-up phase ends as early as possible

STARTED_NS = time.time_ns()
STARTED = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402

EXIT_TENSORFLOW = 3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks._child")
    p.add_argument("--model", required=True)
    p.add_argument("--image", required=True, help=".npy with one prepared uint8 image")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--spawned-ns", type=int, required=True, help="parent's time.time_ns()")
    args = p.parse_args(argv)
    keras_model = args.model.endswith(".keras")
    record = {"startup_ms": (STARTED_NS - args.spawned_ns) / 1e6}

    from pathlib import Path

    mark = started_imports = time.perf_counter()
    if keras_model:
        from export.source import load_keras
        from runtime.preprocess import to_model_values
        from train.tf_env import import_tensorflow

        import_tensorflow(args.threads)
    else:
        import runtime
        record["import_runtime_ms"], mark = (time.perf_counter() - mark) * 1e3, \
            time.perf_counter()
        if args.model.endswith(".onnx"):  # the runtime imports its engine inside load()
            import onnxruntime  # noqa: F401
        else:
            import ai_edge_litert.interpreter  # noqa: F401
        record["import_engine_ms"] = (time.perf_counter() - mark) * 1e3
    record["import_ms"] = (time.perf_counter() - started_imports) * 1e3
    mark = time.perf_counter()

    if keras_model:
        model = load_keras(Path(args.model))
    else:
        classifier = runtime.load(Path(args.model), threads=args.threads)
    record["load_ms"] = (time.perf_counter() - mark) * 1e3

    import numpy as np  # already imported by both paths; the file read stays outside the timers

    image = np.load(args.image)
    mark = time.perf_counter()
    if keras_model:
        from runtime.bundle import load_spec

        spec = load_spec(_bundle_of(args.model))
        mark = time.perf_counter()
        label = int(np.asarray(model(to_model_values(image[None], spec), training=False))
                    .argmax())
    else:
        label = classifier.predict(image, top_k=1)[0].index
    record["first_ms"] = (time.perf_counter() - mark) * 1e3
    record["total_ms"] = record["startup_ms"] + record["import_ms"] + record["load_ms"] + \
        record["first_ms"]
    record["in_process_ms"] = (time.perf_counter() - STARTED) * 1e3
    record["label"] = label
    record["maxrss"] = _maxrss()
    record["platform"] = sys.platform
    record["tensorflow_imported"] = "tensorflow" in sys.modules
    print(json.dumps(record))
    if not keras_model and record["tensorflow_imported"]:
        print(f"{args.model}: the runtime child imported TensorFlow", file=sys.stderr)
        return EXIT_TENSORFLOW
    return 0


def _bundle_of(model: str) -> str:
    import os

    return os.path.dirname(os.path.abspath(model))


def _maxrss() -> int | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


if __name__ == "__main__":
    sys.exit(main())
