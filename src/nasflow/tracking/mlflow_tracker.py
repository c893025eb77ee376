"""MLflow tracking: a parent run per search with a nested child run per candidate.

This is the only module that imports mlflow. It uses the explicit client (run ids passed
around, no "active run" global) except to log models, which MLflow only offers fluently.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.time import get_current_time_millis

from nasflow.errors import NasflowError, first_line
from nasflow.interrupts import Interrupted, deferred
from nasflow.tracking.base import OWNER_TAG, Tracker, TrackingError, flatten
from nasflow.tracking.store import check_store

if TYPE_CHECKING:
    from torch import nn

    from nasflow.loop import Candidate
    from nasflow.records import Task
    from nasflow.search_spaces.base import Graph

# MLflow caps a parameter value at 6,000 characters and a batch at 100 parameters.
#: The experiment tag by which MLflow's UI picks its view: without it, a new experiment
#: opens on GenAI traces; "custom_model_development" opens on the runs table.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
#: On a candidate's run that started from another's trained weights: that one's run.
PARENT_RUN_TAG = "nasflow.parent_run_id"
_TRAINING_KIND = (EXPERIMENT_KIND_TAG, "custom_model_development")

_MAX_PARAM = 6000
_PARAM_BATCH = 100

log = logging.getLogger(__name__)


class MlflowTracker(Tracker):
    """Sends runs to an MLflow tracking server or store.

    Args:
        uri: Tracking URI (``sqlite:///mlflow.db``, ``http://host:5000``, ...).
        experiment: Experiment the runs belong to; created if missing.
        artifact_location: Artifact root of a newly created experiment (a local path is
            resolved against the working directory).

    The experiment is tagged as model training (`EXPERIMENT_KIND_TAG`), so the MLflow UI
    opens it on its runs. The store is checked when the tracker is built (a server must
    answer within seconds, a SQLite file's folder must be writable), and every later
    failure of the store is a `TrackingError` naming the URI.
    """

    name = "mlflow"
    keeps_artifacts = True

    def __init__(
        self,
        uri: str = "sqlite:///mlflow.db",
        experiment: str = "nasflow",
        artifact_location: str | None = "mlartifacts",
    ) -> None:
        self.uri = uri
        check_store(uri)
        self.client: Any = _Guarded(MlflowClient(tracking_uri=uri), uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is not None:
            self.experiment_id = found.experiment_id
            if EXPERIMENT_KIND_TAG not in found.tags:  # made before nasflow set the kind
                self.client.set_experiment_tag(self.experiment_id, *_TRAINING_KIND)
        else:
            location = artifact_location
            if location and "://" not in location:
                location = Path(location).resolve().as_uri()
            self.experiment_id = self.client.create_experiment(
                experiment, location, tags=dict([_TRAINING_KIND])
            )
        self.run_id: str | None = None
        #: Iterations of the open search run whose candidates are already logged.
        self._logged: set[int] = set()
        #: Child runs of candidates that started and have not been logged, by proposal;
        #: after a resume, also those an interrupted process left unfinished.
        self._open: dict[int, str] = {}
        #: The last epoch recorded live, by (proposal, fidelity).
        self._epochs: dict[tuple[int, float | None], int] = {}
        #: The child run of each logged candidate, by architecture id: its children's
        #: runs name it (``nasflow.parent_run_id``).
        self._runs: dict[str, str] = {}

    @contextmanager
    def run(
        self,
        name: str,
        tags: Mapping[str, str],
        params: Mapping[str, Any],
        resume_run_id: str | None = None,
    ) -> Iterator[str | None]:
        self._logged, self._open, self._epochs, self._runs = set(), {}, {}, {}
        if resume_run_id is not None and self._exists(resume_run_id):
            # A resumed search continues its run: candidates and steps carry on. Those the
            # interrupted process finished are not logged again. A child it left RUNNING
            # is KILLED, unless it is a candidate that was in flight: the resumed search
            # runs it again, into the same child run.
            self.run_id = resume_run_id
            self.client.update_run(resume_run_id, status="RUNNING")
            for child in self._children(resume_run_id):
                tags = child.data.tags
                if "nasflow.iteration" in tags and child.info.status != "RUNNING":
                    self._logged.add(int(tags["nasflow.iteration"]))
                    self._runs[tags["nasflow.arch_id"]] = child.info.run_id
                    continue
                if child.info.status == "RUNNING":
                    self.client.set_terminated(child.info.run_id, "KILLED")
                if "nasflow.proposal" in tags:
                    self._open[int(tags["nasflow.proposal"])] = child.info.run_id
        else:
            run = self.client.create_run(self.experiment_id, run_name=name, tags=dict(tags))
            self.run_id = run.info.run_id
            self._log_params(self.run_id, flatten(dict(params)))
        status = "FAILED"
        try:
            yield self.run_id
            status = "FINISHED"
        except (KeyboardInterrupt, Interrupted):
            status = "KILLED"
            raise
        finally:
            try:
                self.client.set_terminated(self.run_id, status)
            except TrackingError as error:  # the store is down: the error that led here counts
                log.warning("could not mark run %s %s: %s", self.run_id, status, error)
            self.run_id = None

    def close_stale(self, owner: str, keep: str | None = None) -> None:
        """Mark KILLED, with their open children, the runs of this experiment still
        RUNNING under `owner` (but `keep`): a process that died left them open."""
        stale = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{OWNER_TAG}` = '{owner}' and attributes.status = 'RUNNING'",
        )
        for run in stale:
            run_id = run.info.run_id
            if run_id == keep:
                continue
            for child in self._children(run_id):
                if child.info.status == "RUNNING":
                    self.client.set_terminated(child.info.run_id, "KILLED")
            self.client.set_terminated(run_id, "KILLED")
            log.info("run %s, left running by a process that died, is marked KILLED", run_id)

    def _children(self, run_id: str) -> list[Any]:
        return list(
            self.client.search_runs(
                [self.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'"
            )
        )

    def start_candidate(self, task: Task) -> None:
        assert self.run_id is not None, "start_candidate needs an open search run"
        known = self._open.get(task.iteration)
        if known is not None:  # left unfinished by an interrupted process: continued
            self.client.update_run(known, status="RUNNING")
            return
        tags = {"nasflow.proposal": str(task.iteration), "nasflow.status": "running"}
        if task.lineage is not None and task.lineage.parent.id in self._runs:
            tags[PARENT_RUN_TAG] = self._runs[task.lineage.parent.id]
        self._open[task.iteration] = self._create_child(
            f"candidate-{task.iteration:03d}", task.arch, task.seed, tags
        )

    def log_epoch(self, task: Task, record: Mapping[str, float]) -> None:
        child = self._open.get(task.iteration)
        epoch = int(record.get("epoch", 0))
        key = (task.iteration, task.fidelity)
        if child is None or epoch <= self._epochs.get(key, -1):
            return
        self._epochs[key] = epoch
        # A rung's epochs restart from 0: named by the rung, so that they do not mix.
        prefix = "" if task.fidelity is None else f"rung_{task.fidelity:g}ep_"
        now = get_current_time_millis()
        metrics = [
            Metric(f"{prefix}{name}", float(value), now, epoch)
            for name, value in record.items()
            if name != "epoch"
        ]
        self.client.log_batch(child, metrics=metrics)

    def _create_child(self, name: str, arch: Any, seed: int, tags: Mapping[str, str]) -> str:
        assert self.run_id is not None
        child = self.client.create_run(
            self.experiment_id,
            run_name=name,
            tags={"mlflow.parentRunId": self.run_id, "nasflow.arch_id": arch.id, **tags},
        ).info.run_id
        self._log_params(
            child,
            {
                **flatten(arch.to_json(), "arch"),
                "arch.id": arch.id,
                "arch.description": arch.describe(),
                "seed": seed,
            },
        )
        return child

    def log_candidate(self, candidate: Candidate, graphs: Sequence[Graph] = ()) -> None:
        assert self.run_id is not None, "log_candidate needs an open search run"
        if candidate.iteration in self._logged:  # logged before an interruption
            return
        evaluation, arch = candidate.evaluation, candidate.arch
        step, now = candidate.iteration, get_current_time_millis()
        tags = {
            "nasflow.iteration": str(step),
            "nasflow.status": evaluation.status,
            **({"nasflow.error": evaluation.error} if evaluation.error else {}),
        }
        if candidate.parent is not None and candidate.parent in self._runs:
            tags[PARENT_RUN_TAG] = self._runs[candidate.parent]
        child = self._open.pop(candidate.proposal, None)
        if child is None:
            child = self._create_child(f"candidate-{step:03d}", arch, candidate.seed, tags)
        else:
            for key, value in tags.items():
                self.client.set_tag(child, key, value)
        self._runs[arch.id] = child
        # Epochs already recorded live are not recorded twice.
        live = self._epochs.get((candidate.proposal, None), -1)
        metrics = [
            Metric(key, value, now, int(epoch["epoch"]))
            for epoch in evaluation.history
            if int(epoch["epoch"]) > live
            for key, value in epoch.items()
            if key != "epoch"
        ]
        # Successive halving: each rung's result, stepped by its fidelity (epochs).
        metrics += [
            Metric(f"rung_{key}", float(rung[key]), now, round(rung["fidelity"] or 0))
            for rung in evaluation.rungs
            for key in ("score", "seconds")
            if rung[key] is not None
        ]
        finals = {"score": evaluation.score, "params": evaluation.params, "flops": evaluation.flops}
        finals |= {"train_seconds": evaluation.seconds, "cost_epochs": evaluation.cost}
        finals |= {"fidelity": evaluation.fidelity, "rungs": len(evaluation.rungs) or None}
        finals |= {"inherited_params": evaluation.inherited}
        finals |= {k: v for k, v in evaluation.metrics.items() if k.startswith("filter_")}
        metrics += [Metric(k, float(v), now, 0) for k, v in finals.items() if v is not None]
        self.client.log_batch(child, metrics=metrics)
        self.client.log_text(
            child, json.dumps(arch.to_json(), indent=2, sort_keys=True), "architecture.json"
        )
        if graphs:
            from nasflow import diagram  # matplotlib loads only when there is a diagram

            self.client.log_text(child, diagram.render(graphs).decode(), "diagram.svg")
        # A stopped candidate finished as intended, only early; nasflow.status tells which.
        self.client.set_terminated(child, "FAILED" if evaluation.status == "failed" else "FINISHED")

        parent = {"best_score": candidate.best_score, "elapsed_seconds": candidate.elapsed}
        parent |= {"total_cost_epochs": candidate.cost, "proposals": candidate.proposals}
        if evaluation.score is not None:
            parent["candidate_score"] = evaluation.score
        # What the strategy learnt from this candidate, e.g. a controller's reward and loss.
        parent |= {f"strategy_{k}": v for k, v in candidate.strategy_metrics.items()}
        self.log_metrics({k: v for k, v in parent.items() if v is not None}, step=step)
        self._logged.add(step)

    def _exists(self, run_id: str) -> bool:
        try:
            return self.client.get_run(run_id).info.experiment_id == self.experiment_id
        except TrackingError as error:
            cause = error.__cause__
            if isinstance(cause, MlflowException) and cause.error_code == "RESOURCE_DOES_NOT_EXIST":
                return False  # deleted from the store, say
            raise

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        assert self.run_id is not None
        now = get_current_time_millis()
        batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch)

    def log_dict(self, data: Any, filename: str) -> None:
        assert self.run_id is not None
        self.client.log_dict(self.run_id, data, filename)

    def log_artifact(self, path: str) -> None:
        assert self.run_id is not None
        self.client.log_artifact(self.run_id, path)

    def log_model(self, network: nn.Module, example: Any) -> None:
        import mlflow.pytorch
        import torch

        assert self.run_id is not None
        network.eval()
        mlflow.set_tracking_uri(self.uri)
        with _store_errors(self.uri), mlflow.start_run(run_id=self.run_id):
            mlflow.pytorch.log_model(
                network,
                name="model",
                # The example also gives MLflow the signature and the graph to export.
                input_example=example,
                # Explicit requirements: inferring them imports the model in a subprocess,
                # which takes longer than the rest of the logging.
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            )

    def log_onnx_model(self, path: str, example: Any, output: Any) -> None:
        import mlflow.onnx
        import onnx
        import onnxruntime
        from mlflow.models import infer_signature

        assert self.run_id is not None
        mlflow.set_tracking_uri(self.uri)
        with _store_errors(self.uri), mlflow.start_run(run_id=self.run_id):
            mlflow.onnx.log_model(
                onnx.load(path),
                name="onnx_model",
                input_example=example,
                signature=infer_signature(example, output),
                onnx_execution_providers=["CPUExecutionProvider"],
                save_as_external_data=False,
                # What running it needs, named rather than inferred (inferring imports
                # the model in a subprocess).
                pip_requirements=[
                    f"onnx=={onnx.__version__}",
                    f"onnxruntime=={onnxruntime.__version__}",
                ],
            )

    def lightning_logger(self) -> Any:
        from pytorch_lightning.loggers import MLFlowLogger

        class Logger(MLFlowLogger):  # type: ignore[misc]
            """Lightning's MLflow logger, whose writes a Ctrl-C waits for (as `_Guarded`)."""

            def log_hyperparams(self, *args: Any, **kwargs: Any) -> None:
                with deferred():
                    super().log_hyperparams(*args, **kwargs)

            def log_metrics(self, *args: Any, **kwargs: Any) -> None:
                with deferred():
                    super().log_metrics(*args, **kwargs)

            def finalize(self, *args: Any, **kwargs: Any) -> None:
                with deferred():
                    super().finalize(*args, **kwargs)

        assert self.run_id is not None
        return Logger(tracking_uri=self.uri, run_id=self.run_id)

    def _log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        items = [Param(str(k)[:250], str(v)[:_MAX_PARAM]) for k, v in params.items()]
        for i in range(0, len(items), _PARAM_BATCH):
            self.client.log_batch(run_id, params=items[i : i + _PARAM_BATCH])


@contextmanager
def _store_errors(uri: str) -> Iterator[None]:
    """Any failure of the store as a TrackingError naming `uri` and the cause."""
    try:
        yield
    except (NasflowError, Interrupted, KeyboardInterrupt):
        raise
    except Exception as error:
        first = first_line(error)[:300]
        raise TrackingError(f"the tracking store {uri} failed: {first}") from error


class _Guarded:
    """An MlflowClient whose every call raises `TrackingError` when the store fails."""

    def __init__(self, client: MlflowClient, uri: str) -> None:
        self._client = client
        self._uri = uri

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        @functools.wraps(attribute)
        def call(*args: Any, **kwargs: Any) -> Any:
            # A Ctrl-C waits for the call: cut inside a transaction, a write can keep a
            # SQLite store locked, so the run could not be marked KILLED.
            with _store_errors(self._uri), deferred():
                return attribute(*args, **kwargs)

        return call
