"""Where a stage's LLM work runs: in this process (`local`), or on a Ray cluster through Ray Data (`ray`).

The stages cut their LLM work into units (a batch of generation items, a batch of judging pairs) and hand them,
with a picklable `Work` that says how to load an engine and run one unit on it, to an executor; the executor
gives the results back in the units' order. Everything that reads or writes the run folder stays with the stage
in the driver process, so both executors write the same files: same ids, same per-prompt seeds, the same batches
sent to the same engine, hence the same records. Resume stays the stage's: it sends only the units it lacks.

Ray: each unit is one row of a `ray.data` dataset, mapped by `map_batches` over a pool of actors that each load
one engine once (`--replicas` of them, each holding `--tensor-parallel` GPUs when the cluster has GPUs, passed
to vLLM as `tensor_parallel_size`). Ray Data restarts an actor that dies and retries its unit (its defaults:
`max_restarts=-1`, `max_task_retries=-1`); the driver writes a unit's records only when the unit comes back,
and in order, so a killed worker costs its unit's time, never a lost or repeated record. `ray.data.llm`'s vLLM
processor is not used: it serves chat generation per row, while a unit here needs the backend's own `generate`
(per-prompt seeds, prefilled answers, retries) and `score` (prompt log-probs, shared passage contexts).
Ray is an optional extra (`pip install 'synthgen[ray]'`), imported only when this executor runs.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Optional, Protocol, Sequence, TypeVar

from synthgen.errors import UserError

EXECUTORS = ("local", "ray")
U = TypeVar("U")
R = TypeVar("R")


@dataclass(frozen=True)
class ExecutorConfig:
    kind: str = "local"  # local | ray
    address: Optional[str] = None  # ray.init(address=...); None: RAY_ADDRESS, else a Ray started for this run
    replicas: int = 1  # LLM engines (Ray actors) working at once
    tensor_parallel: int = 1  # GPUs per engine: vLLM's tensor_parallel_size

    def check(self) -> None:
        if self.kind not in EXECUTORS:
            raise UserError(f"unknown --executor '{self.kind}': expected one of {', '.join(EXECUTORS)}")
        if self.replicas < 1 or self.tensor_parallel < 1:
            raise UserError("--replicas and --tensor-parallel must be at least 1")
        if self.kind == "local" and (self.replicas > 1 or self.address):
            raise UserError("--replicas and --ray-address need --executor ray")

    def llm_options(self, spec: Optional[str]) -> dict[str, Any]:
        """Engine options for `load_llm`: tensor parallelism is vLLM's."""
        if self.tensor_parallel == 1:
            return {}
        if not (spec or "").startswith("vllm:"):
            raise UserError("--tensor-parallel needs a vLLM engine (--llm vllm:PATH)")
        return {"tensor_parallel_size": self.tensor_parallel}


class Work(Protocol[U, R]):
    """A stage's LLM work, picklable: the executor calls `load` once per engine, `run` once per unit."""

    def load(self) -> Any: ...

    def run(self, engine: Any, unit: U) -> R: ...

    def close(self, engine: Any) -> None: ...


def run_units(config: ExecutorConfig, work: Work[U, R], units: Sequence[U]) -> Iterator[R]:
    """The result of every unit, in the order of `units`; nothing is loaded when there are no units."""
    config.check()
    if not units:
        return iter(())
    if config.kind == "ray":
        return _run_ray(config, work, units)
    return _run_local(work, units)


def _run_local(work: Work[U, R], units: Iterable[U]) -> Iterator[R]:
    engine = work.load()
    try:
        for unit in units:
            yield work.run(engine, unit)
    finally:
        work.close(engine)


class _Engine:
    """A Ray Data actor: one engine, loaded once, running the units of the batches it is handed.

    A user's mistake (a model folder missing on a worker) comes back as the unit's result, to be shown as one
    line by the driver: raised here, it would kill the actor, which Ray would then restart without end."""

    def __init__(self, work: bytes):
        self.work, self.engine, self.mistake = pickle.loads(work), None, None
        try:
            self.engine = self.work.load()
        except UserError as exc:
            self.mistake = str(exc)

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        results = [pickle.dumps(self._run(pickle.loads(unit))) for unit in batch["unit"]]
        return {"n": batch["n"], "result": np.array(results, dtype=object)}

    def _run(self, unit: Any) -> tuple[str | None, Any]:
        if self.mistake is not None:
            return self.mistake, None
        try:
            return None, self.work.run(self.engine, unit)
        except UserError as exc:
            return str(exc), None

    def __del__(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is not None:
            self.work.close(engine)


def _run_ray(config: ExecutorConfig, work: Work[U, R], units: Sequence[U]) -> Iterator[R]:
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray Data: pip install 'synthgen[ray]'") from None
    import logging

    if not ray.is_initialized():
        ray.init(address=config.address, log_to_driver=False, include_dashboard=False, logging_level=logging.WARNING)
    ray.data.DataContext.get_current().enable_progress_bars = False  # the stage's own bar counts the units
    gpus = config.tensor_parallel if ray.cluster_resources().get("GPU", 0) > 0 else 0
    rows = [{"n": n, "unit": pickle.dumps(unit)} for n, unit in enumerate(units)]
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows))  # one unit a block: any actor takes any
    results = dataset.map_batches(_Engine, fn_constructor_args=(pickle.dumps(work),), batch_size=1,
                                  compute=ray.data.ActorPoolStrategy(size=config.replicas), num_gpus=gpus,
                                  batch_format="numpy")
    return _in_order(results.iter_rows(), len(units))


def _in_order(rows: Iterable[dict], total: int) -> Iterator[Any]:
    """Results as the units were ordered, each as soon as every earlier one is in: the stage writes in order."""
    waiting: dict[int, bytes] = {}
    expected = 0
    for row in rows:
        waiting[int(row["n"])] = row["result"]
        while expected in waiting:
            mistake, result = pickle.loads(waiting.pop(expected))
            if mistake is not None:
                raise UserError(f"on a Ray worker: {mistake}")
            yield result
            expected += 1
    if expected != total:
        raise RuntimeError(f"Ray Data returned {expected} of {total} units")
