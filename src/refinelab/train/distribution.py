"""``train.distribute``: the train stage under TensorFlow's ``tf.distribute`` strategies.

- ``none``: no strategy, one replica (any backend).
- ``mirrored``: ``MirroredStrategy`` over this machine's GPUs (its logical CPU devices where it has none).
- ``multi_worker``: ``MultiWorkerMirroredStrategy``, one train-stage process per machine, the cluster and
  this process's place in it named by ``$TF_CONFIG``. Every worker trains on the same params and data
  (checked before the first step); the chief (task ``chief``, else worker 0) writes the outputs. The
  others run the same code with their outputs in a temporary folder that is removed: TensorFlow's own
  pattern, as a save may need every worker.

Keras 3.15 cannot ``fit`` under ``MultiWorkerMirroredStrategy`` as it is (keras-team/keras#20585): it
reduces a nested data batch across workers to build the model, and reduces scalar logs along an axis they
do not have. :func:`adapt_to_multi_worker` works around both on the model instance; the 2-worker test
fails if a Keras upgrade changes what it relies on (Keras is pinned).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import tempfile
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from refinelab.core.errors import ClusterError, ParamsError

if TYPE_CHECKING:  # Imported where used: the stage script imports this module before Keras' backend is set.
    from refinelab.data.pipeline import BatchShare

log = logging.getLogger(__name__)

TF_CONFIG_ENV = "TF_CONFIG"
CLUSTER_ROLES = ("chief", "worker")  # MultiWorkerMirroredStrategy's; no parameter servers or evaluators.


@dataclass(frozen=True)
class ClusterTask:
    """This process's task in the cluster ``$TF_CONFIG`` names."""

    role: str
    index: int
    workers: int  # Processes in the cluster, the chief included.
    is_chief: bool
    address: str  # host:port this process serves the cluster on.

    def __str__(self) -> str:
        return f"{self.role} {self.index}"


def cluster_task(environ: Any = os.environ) -> ClusterTask | None:
    """``$TF_CONFIG`` checked and read (None when it is not set), with a message naming what is wrong."""
    raw = environ.get(TF_CONFIG_ENV)
    if not raw:
        return None
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ParamsError(f"{TF_CONFIG_ENV}: not JSON ({exc.msg}, character {exc.pos})") from None
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise ParamsError(f'{TF_CONFIG_ENV}: expected {{"cluster": {{"worker": ["host:port", ...]}}, '
                          f'"task": {{"type": "worker", "index": 0}}}}, got {raw!r}')
    unknown = sorted(set(cluster) - set(CLUSTER_ROLES))
    if unknown:
        raise ParamsError(f"{TF_CONFIG_ENV}: cluster roles {', '.join(unknown)} are not used by "
                          f"MultiWorkerMirroredStrategy; valid: {', '.join(CLUSTER_ROLES)}")
    for role, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses or not all(isinstance(a, str) and ":" in a
                                                                         for a in addresses):
            raise ParamsError(f'{TF_CONFIG_ENV}: cluster.{role} must be a list of "host:port", got {addresses!r}')
    if len(cluster.get("chief", [])) > 1:
        raise ParamsError(f"{TF_CONFIG_ENV}: a cluster has at most one chief, got {len(cluster['chief'])}")
    role, index = task.get("type"), task.get("index")
    if role not in cluster or type(index) is not int or not 0 <= index < len(cluster[role]):
        raise ParamsError(f"{TF_CONFIG_ENV}: task {task!r} is not in the cluster "
                          f"({', '.join(f'{r}: {len(a)}' for r, a in cluster.items())})")
    is_chief = role == "chief" if "chief" in cluster else index == 0
    return ClusterTask(role, index, sum(len(addresses) for addresses in cluster.values()), is_chief,
                       cluster[role][index])


def localhost_cluster(workers: int) -> list[str]:
    """One ``$TF_CONFIG`` per worker of a cluster on this machine, on ports free now (for tests and
    benchmarks: the OS picks them, and they are closed again for the workers to bind)."""
    sockets = [socket.socket() for _ in range(workers)]
    for sock in sockets:
        sock.bind(("localhost", 0))
    cluster = {"worker": [f"localhost:{sock.getsockname()[1]}" for sock in sockets]}
    for sock in sockets:
        sock.close()
    return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}) for index in range(workers)]


def writes_outputs() -> bool:
    """Whether this train-stage process writes into the workspace: all but a cluster's other workers."""
    task = cluster_task()
    return task is None or task.is_chief


@dataclass(frozen=True)
class Distribution:
    """The strategy training runs under (None: no strategy), and this process's part in it."""

    strategy: Any = None
    task: ClusterTask | None = None

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync if self.strategy is not None else 1

    @property
    def is_chief(self) -> bool:
        """Whether this process writes the outputs (every process but a multi-worker cluster's others)."""
        return self.task is None or self.task.is_chief

    def scope(self) -> contextlib.AbstractContextManager:
        """Where variables are made (the model's, the optimizer's, the metrics')."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def describe(self) -> str:
        if self.strategy is None:
            return ""
        if self.task is None:
            return f", {self.replicas} replicas"
        return f", {self.replicas} replicas on {self.task.workers} workers (this one: {self.task})"

    @contextlib.contextmanager
    def outputs(self, *paths: str | Path | None) -> Iterator[tuple[Path | None, ...]]:
        """Where this process writes ``paths``: there on the chief; on another worker, the same names in a
        temporary folder, removed afterwards (a subfolder each: two outputs may share a name)."""
        if self.is_chief:
            yield tuple(None if path is None else Path(path) for path in paths)
            return
        with tempfile.TemporaryDirectory(prefix=f"refinelab-{self.task.role}{self.task.index}-") as folder:
            for position in range(len(paths)):
                Path(folder, str(position)).mkdir()
            yield tuple(None if path is None else Path(folder, str(position), Path(path).name)
                        for position, path in enumerate(paths))

    def distribute(self, make: Callable[[BatchShare | None], Any], class_weight: dict[int, float] | None = None) -> Any:
        """The dataset ``make`` gives, for ``fit``: as it is without a cluster (a single-machine strategy cuts
        every batch itself, and ``fit`` applies ``class_weight``); on a cluster, each worker's pipeline
        gives its share of every batch, with ``class_weight`` applied as ``fit`` would (it cannot on a
        distributed dataset)."""
        if self.task is None:
            return make(None)
        # Keras' own class-weight mapping, pinned with Keras; fit refuses class_weight for this dataset.
        from keras.src.trainers.data_adapters.tf_dataset_adapter import make_class_weight_map_fn

        from refinelab.data.pipeline import BatchShare

        def worker_dataset(context):
            local = self.replicas // context.num_input_pipelines
            dataset = make(BatchShare(context.input_pipeline_id * local, local, self.replicas))
            return dataset if class_weight is None else dataset.map(make_class_weight_map_fn(class_weight))

        return self.strategy.distribute_datasets_from_function(worker_dataset)

    def check_same_training(self, identity: dict[str, Any]) -> None:
        """Fail on every worker unless all of them train the same ``identity`` (params, data and code: see
        :func:`code_identity`): a worker on another commit, params.yaml or data would otherwise train a
        different model in lockstep."""
        if self.task is None:
            return
        import tensorflow as tf

        local = identity_numbers(identity)

        @tf.function  # Eager collectives are slow, and TensorFlow warns about them.
        def sum_over_replicas():
            return self.strategy.reduce("SUM", self.strategy.run(lambda: tf.constant(local, tf.float64)), axis=None)

        totals = sum_over_replicas().numpy()
        if not same_on_every_replica(local, totals, self.replicas):
            raise ParamsError(
                f"train.distribute: multi_worker: the workers' params, data or code differ (this is {self.task} of "
                f"{TF_CONFIG_ENV}); run every worker on the same commit, params.yaml and data (`dvc pull`)"
            )

    @contextlib.contextmanager
    def failures_reported(self) -> Iterator[None]:
        """A cluster's lost worker as one clear error: TensorFlow stops the others at their next
        collective step with a long gRPC traceback."""
        if self.task is None:
            yield
            return
        import tensorflow as tf

        try:
            yield
        except (tf.errors.UnavailableError, tf.errors.AbortedError, tf.errors.DeadlineExceededError) as exc:
            raise ClusterError(f"train.distribute: multi_worker: another worker of {TF_CONFIG_ENV}'s cluster stopped "
                               f"or cannot be reached (TensorFlow's {type(exc).__name__}; --debug shows it); this "
                               f"{self.task} stops too: start every worker again") from exc


def code_identity() -> dict[str, str]:
    """The code a worker trains with: refinelab's modules (by content), Keras' and TensorFlow's versions."""
    import keras
    import tensorflow as tf

    digest = hashlib.sha256()
    for module in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(module.name.encode() + b"\0" + module.read_bytes())
    return {"refinelab": digest.hexdigest(), "keras": keras.__version__, "tensorflow": tf.__version__}


# A digest as numbers a float64 sum keeps exact: 16-bit pieces, and their squares.
DIGEST_PIECES = 8


def identity_numbers(identity: dict[str, Any]) -> list[float]:
    """The pieces of ``identity``'s digest followed by their squares (see :func:`same_on_every_replica`)."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).digest()
    pieces = [float(int.from_bytes(digest[2 * i: 2 * i + 2], "big")) for i in range(DIGEST_PIECES)]
    return pieces + [piece * piece for piece in pieces]


def same_on_every_replica(local: list[float], totals: Any, replicas: int) -> bool:
    """Whether the sums over ``replicas`` of every replica's :func:`identity_numbers` say all are ``local``:
    the sums of ``d`` and of ``d**2`` are ``n*d`` and ``n*d**2`` only when the spread of the ``d`` is 0."""
    return all(float(total) == replicas * value for total, value in zip(totals, local, strict=True))


def build_distribution(distribute: str) -> Distribution:
    """The strategy ``train.distribute`` names. Call it before TensorFlow runs anything else: a
    multi-worker strategy configures TensorFlow's runtime for the cluster, and waits for every worker."""
    task = cluster_task()
    if task is not None and task.workers > 1 and distribute != "multi_worker":
        # This process would train alone and write outputs while the others wait for it.
        raise ParamsError(f"train.distribute: {distribute}, but ${TF_CONFIG_ENV} names a cluster of {task.workers} "
                          "processes: set train.distribute: multi_worker on every worker, or unset TF_CONFIG")
    if distribute == "none":
        return Distribution()
    if distribute == "multi_worker" and task is None:
        raise ParamsError(f"train.distribute: multi_worker needs ${TF_CONFIG_ENV}, naming the cluster's workers "
                          "and this one's task (README, 'Running on a cluster')")
    import tensorflow as tf  # Params allow a strategy only with the TensorFlow backend.

    if distribute == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return Distribution(tf.distribute.MirroredStrategy([device.name for device in devices]))
    log.info("%s of a %d-worker cluster (%s): waiting for every worker to start", task, task.workers, task.address)
    try:
        return Distribution(tf.distribute.MultiWorkerMirroredStrategy(), task)
    except tf.errors.OpError as exc:  # Typically the port is taken: "Could not start gRPC server".
        raise ClusterError(f"{TF_CONFIG_ENV}: this {task} cannot serve the cluster on {task.address} "
                           f"({exc.message.strip().splitlines()[0]}); is the port in use?") from exc


def adapt_to_multi_worker(model: Any, distribution: Distribution) -> None:
    """Let ``model.fit``/``evaluate``/``predict`` run under ``MultiWorkerMirroredStrategy`` (keras#20585).

    - The model is built from this worker's share of the first batch, where Keras first reduces the
      whole nested batch across workers (which the strategy cannot).
    - Each step's scalar logs become 1-element vectors: Keras averages them across workers along axis 0.
      (The epoch's logs come from the metrics, which the strategy sums over every worker.)
    """
    if distribution.task is None:
        return
    import tensorflow as tf

    strategy = distribution.strategy

    def build_from_local_batch(self, iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(
                    lambda value: strategy.experimental_local_results(value)[0], next(batches))
                break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def logs_as_vectors(step):
        def step_with_vector_logs(data):
            return {name: tf.reshape(value, [1]) if value.shape.rank == 0 else value
                    for name, value in step(data).items()}
        return step_with_vector_logs

    model._maybe_symbolic_build = types.MethodType(build_from_local_batch, model)
    model.train_step = logs_as_vectors(model.train_step)
    model.test_step = logs_as_vectors(model.test_step)
