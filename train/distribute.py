"""Choosing a tf.distribute strategy and knowing this process's role in it.

The cluster comes from the standard ``TF_CONFIG`` variable (see docs/distributed.md).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import tensorflow as tf

from runtime.errors import EdgeCNNError

log = logging.getLogger(__name__)


def tf_config() -> dict[str, Any]:
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        return {}
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise EdgeCNNError(f"TF_CONFIG is not valid JSON ({exc}); see docs/distributed.md") \
            from None
    if not isinstance(config, dict):
        raise EdgeCNNError("TF_CONFIG must be a JSON object with 'cluster' and 'task'")
    return config


def cluster_size(config: dict[str, Any]) -> int:
    cluster = config.get("cluster", {})
    return sum(len(cluster.get(role, [])) for role in ("chief", "worker"))


def resolve_strategy_name(name: str) -> str:
    """``auto``: multiworker when TF_CONFIG lists several workers, mirrored with several GPUs."""
    config = tf_config()
    if name == "multiworker" and cluster_size(config) < 1:
        raise EdgeCNNError("--strategy multiworker needs TF_CONFIG describing the cluster and "
                           "this process's task; see docs/distributed.md")
    if name != "auto":
        return name
    if cluster_size(config) > 1:
        return "multiworker"
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return "mirrored"
    return "single"


def make_strategy(name: str) -> tf.distribute.Strategy:
    """Create the strategy. Must run before any other TensorFlow work in the process."""
    name = resolve_strategy_name(name)
    if name == "multiworker":
        strategy: tf.distribute.Strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif name == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()  # the default strategy: plain single device
    log.debug("strategy %s with %d replica(s)", name, strategy.num_replicas_in_sync)
    return strategy


def task(strategy: tf.distribute.Strategy) -> tuple[str | None, int]:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return None, 0
    return resolver.task_type, int(resolver.task_id or 0)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """The chief (or worker 0 when there is no chief) writes the bundle; others only train."""
    task_type, task_id = task(strategy)
    if task_type is None or task_type == "chief":
        return True
    has_chief = bool(tf_config().get("cluster", {}).get("chief"))
    return task_type == "worker" and task_id == 0 and not has_chief


def worker_name(strategy: tf.distribute.Strategy) -> str:
    task_type, task_id = task(strategy)
    return "local" if task_type is None else f"{task_type}-{task_id}"
