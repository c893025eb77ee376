"""Accuracy against latency on digits, under a parameter bound, in the real pipeline.

Runs the pipeline's own entry points on the prepared digits data into a scratch folder:
one search with ``search.objectives=[val_acc:max,latency_ms:min]`` and
``search.constraints=["params<=50000"]`` (the default random search, 20 candidates of 8
epochs, unless ``--overrides`` says otherwise), then two retrains from it, each
evaluated: ``retrain.select=best`` and ``retrain.select=smallest_within:0.5``. The
search runs tracked to a scratch MLflow store, so the child runs can be counted too.

Recorded: how many proposals were filtered and whether any trained candidate (in
history.jsonl or among MLflow's child runs) has more than 50,000 parameters; the front;
and for each retrained model its searched validation accuracy, test accuracy,
parameters and measured latency (the search's measure, `latency.*`).

    .venv/bin/python benchmarks/multiobjective_digits.py
    .venv/bin/python benchmarks/multiobjective_digits.py --overrides strategy=mo_evolution

Needs `data/prepared` (``dvc repro prepare`` or ``make repro``). Writes
benchmarks/results/multiobjective_digits.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from report import ROOT, machine_info, run_stage, write_report

BOUND = 50_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--overrides", nargs="*", default=[])
    parser.add_argument(
        "--output", default=str(ROOT / "benchmarks" / "results" / "multiobjective_digits.json")
    )
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="nasflow-mo-digits-"))
    store = f"sqlite:///{scratch / 'mlflow.db'}"
    common = [
        f"paths.search={scratch / 'search'}",
        f"paths.checkpoints={scratch / 'checkpoints'}",
        "search.objectives=[val_acc:max,latency_ms:min]",
        f'search.constraints=["params<={BOUND}"]',
        f"tracking.uri={store}",
        f"tracking.artifact_location={scratch / 'mlartifacts'}",
        *args.overrides,
    ]
    walls = {"search": run_stage("search", common)}
    out = scratch / "search"
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    filtered = [json.loads(line) for line in (out / "filtered.jsonl").read_text().splitlines()]
    front = json.loads((out / "pareto.json").read_text())["front"]
    by_id = {c["id"]: c for c in history}

    import mlflow

    client = mlflow.tracking.MlflowClient(store)
    experiment = client.search_experiments()[0]
    children = [
        r
        for r in client.search_runs([experiment.experiment_id])
        if "mlflow.parentRunId" in r.data.tags
    ]
    models = {}
    for rule in ("best", "smallest_within:0.5"):
        name = rule.split(":")[0]
        paths = [
            f"paths.retrain={scratch / name / 'retrain'}",
            f"paths.evaluate={scratch / name / 'evaluate'}",
        ]
        walls[f"retrain_{name}"] = run_stage("retrain", [*common, *paths, f"retrain.select={rule}"])
        walls[f"evaluate_{name}"] = run_stage("evaluate", [*common, *paths])
        model = json.loads((scratch / name / "retrain" / "model.json").read_text())
        trained = json.loads((scratch / name / "retrain" / "metrics.json").read_text())
        tested = json.loads((scratch / name / "evaluate" / "metrics.json").read_text())
        searched = by_id[model["id"]]
        models[rule] = {
            "description": model["description"],
            "selected": model.get("selected", "the best score"),
            "searched_val_acc": searched["score"],
            "test_acc": tested["test_acc"],
            "params": trained["params"],
            "flops": trained["flops"],
            "latency_ms": searched["metrics"]["latency_ms"],
        }
    report = {
        "machine": machine_info(),
        "overrides": args.overrides,
        "bound": BOUND,
        "candidates": len(history),
        "filtered": len(filtered),
        "trained_over_bound": sum(c["params"] > BOUND for c in history),
        "mlflow_children": len(children),
        "mlflow_children_over_bound": sum(
            r.data.metrics.get("params", 0) > BOUND for r in children
        ),
        "filtered_all_over_bound": all(r["params"] > BOUND for r in filtered),
        "front": [{"description": m["description"], **m["objectives"]} for m in front],
        "models": models,
        "seconds": walls,
    }
    write_report(report, args.output)
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
