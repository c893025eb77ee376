"""Re-run the cheap recorded results and diff them against the committed JSONs.

Two suites, each re-running a result the way it was produced, into a scratch folder:

* ``digits``: every method entry of ``benchmarks/results/oneshot_digits*.json``, through
  `benchmarks/oneshot.py`'s own `run_method` (search -> retrain -> evaluate on
  ``data/prepared``, MLflow off) with the entry's recorded overrides and the recorded
  torch thread count. Compared: every recorded field but wall times (the derived cell, its
  parameter-free ops, the supernet's accuracy, the NB201 table's figures, every epoch's
  record, the retrained test accuracy).
* ``nb201``: every strategy JSON under ``results/benchmark*/``, through
  ``pipelines/benchmark.py`` with the strategy, estimator, seeds and queries the JSON
  records (the option files whose settings are closest, plus an override for each
  recorded setting that differs). Compared: every recorded field but seconds and the
  machine (each seed's curve and incumbent, the means, the settings themselves).
  Results that took longer than ``--max-seconds`` when recorded are skipped.

Equality is exact: a seeded search is deterministic on one machine and setting. Another
CPU or thread count may legitimately differ in the last bits, which a one-shot search
amplifies into another cell (benchmarks/README.md, "Reproducing across machines"); the
first line printed names this machine against the recorded ones to tell that apart.

    .venv/bin/python benchmarks/reproduce.py                  # both suites
    .venv/bin/python benchmarks/reproduce.py --quick          # one result of each kind
    .venv/bin/python benchmarks/reproduce.py --suite nb201 --only multifidelity
    .venv/bin/python benchmarks/reproduce.py --list

Prints one line per result (``match`` or ``DIFFERS: what``) and exits 1 if any result
differs or fails to run. Needs ``data/prepared`` (or ``--prepared``) for the digits suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_class
from oneshot import run_method
from report import ROOT

SUITES = ("digits", "nb201")
DIGITS = ROOT / "benchmarks" / "results"
NB201 = ROOT / "results"
# What `--quick` runs: the cheapest one-shot entry and one of each NB201 estimator kind.
QUICK = (
    "digits:oneshot_digits_enas_seed0.json:enas",
    "nb201:benchmark/random.json",
    "nb201:benchmark/evolution.json",
    "nb201:benchmark_multifidelity/random_sh_eta3.json",
)
# Recorded fields that are measurements of time, not results.
DIGITS_TIMES = {"search_seconds", "stage_wall_seconds"}
NB201_TIMES = {"seconds", "machine"}


class RerunFailed(Exception):
    """A rerun's stage failed; the message is its last line of output."""


@dataclass
class Result:
    """One recorded result: its id, how to re-run it, and how to compare the rerun."""

    id: str
    rerun: Callable[[Path], dict[str, Any]]
    recorded: dict[str, Any]
    compare: Callable[[dict[str, Any], dict[str, Any]], list[str]]
    skip: str | None = None  # why it is not re-run


# -- comparing -----------------------------------------------------------------------------


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested dict's leaves by dotted key (lists are leaves)."""
    if not isinstance(value, dict):
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def same_leaf(key: str, old: Any, new: Any) -> bool:
    """Whether two values of leaf `key` agree; a ``_target_`` agrees with another path to
    the same class (the schemas now name classes by their module, not their package)."""
    if old == new:
        return True
    if key.split(".")[-1] == "_target_" and isinstance(old, str) and isinstance(new, str):
        try:
            return bool(get_class(old) is get_class(new))
        except Exception:  # not importable: not the same class
            return False
    return False


def field_changes(old: dict[str, Any], new: dict[str, Any], limit: int = 3) -> list[str]:
    """Each recorded leaf the rerun changed (or lacks), as "key old -> new"; leaves the
    rerun adds (settings newer code records) are not changes."""
    missing = object()
    flat_new = flatten(new)
    changes = [
        f"{key} {value!r} -> {flat_new.get(key, '(missing)')!r}"
        for key, value in flatten(old).items()
        if not same_leaf(key, value, flat_new.get(key, missing))
    ]
    if len(changes) > limit:
        changes = [*changes[:limit], f"and {len(changes) - limit} more"]
    return changes


def without(record: dict[str, Any], keys: set[str]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in keys}


def compare_digits(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between a recorded one-shot entry and its rerun, most telling first."""
    what = []
    if old.get("derived") != new.get("derived"):
        what.append(f"cell {old.get('derived')} -> {new.get('derived')}")
    if "test_acc" in old and old["test_acc"] != new.get("test_acc"):
        rerun = new.get("test_acc")
        what.append(
            f"test {100 * old['test_acc']:.2f} -> "
            + (f"{100 * rerun:.2f} %" if rerun is not None else "(none)")
        )
    epochs_old = [without(r, {"seconds"}) for r in old.get("per_epoch", [])]
    epochs_new = [without(r, {"seconds"}) for r in new.get("per_epoch", [])]
    if epochs_old != epochs_new:
        differing = [
            i for i, (a, b) in enumerate(zip(epochs_old, epochs_new, strict=False)) if a != b
        ]
        first = differing[0] if differing else min(len(epochs_old), len(epochs_new))
        what.append(
            f"epoch records differ from epoch {first} ({len(differing)} of {len(epochs_old)};"
            f" {len(epochs_new)} rerun)"
        )
    rest = without(old, {"derived", "test_acc", "per_epoch", *DIGITS_TIMES})
    what += field_changes(rest, new)
    return what


def compare_nb201(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between a recorded NB201 benchmark JSON and its rerun."""
    what = []
    runs_old = [without(r, {"seconds"}) for r in old.get("runs", [])]
    runs_new = [without(r, {"seconds"}) for r in new.get("runs", [])]
    if runs_old != runs_new:
        differing = [
            r["seed"]
            for r, s in zip(runs_old, runs_new, strict=False)
            if any(s.get(k) != v for k, v in r.items())
        ]
        if len(runs_old) != len(runs_new):
            what.append(f"{len(runs_new)} seeds rerun, {len(runs_old)} recorded")
        if differing:
            what.append(f"{len(differing)} of {len(runs_old)} seeds differ (first: {differing[0]})")
    rest = without(old, {"runs", *NB201_TIMES})
    what += field_changes(rest, new, limit=4)
    return what


# -- the digits suite --------------------------------------------------------------------


@contextmanager
def threads(count: int | None) -> Iterator[None]:
    """The torch thread count of the stages run inside (they inherit the environment)."""
    before = os.environ.get("OMP_NUM_THREADS")
    if count is not None:
        os.environ["OMP_NUM_THREADS"] = str(count)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = before


@contextmanager
def output_to(log: Path) -> Iterator[None]:
    """This process's stdout and stderr, and so its subprocesses', go to `log` meanwhile."""
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with log.open("w") as handle:
        os.dup2(handle.fileno(), 1)
        os.dup2(handle.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, original in zip((1, 2), saved, strict=True):
                os.dup2(original, fd)
                os.close(original)


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or ["(no output)"])[-1].strip()


def rerun_digits(
    prepared: Path, method: str, common: str, torch_threads: int | None, scratch: Path
) -> dict[str, Any]:
    """`benchmarks/oneshot.py`'s run of `method` with the `common` overrides on the
    `prepared` data, its output kept in a log."""
    log = scratch / "output.log"
    try:
        with threads(torch_threads), output_to(log):
            return run_method(method, common, scratch, prepared, retrain=True)
    except subprocess.CalledProcessError:
        raise RerunFailed(last_line(log.read_text())) from None


def digits_results(prepared: Path) -> list[Result]:
    results = []
    for path in sorted(DIGITS.glob("oneshot_digits*.json")):
        report = json.loads(path.read_text())
        torch_threads = report["machine"].get("torch_threads")
        for method, entry in report["runs"].items():
            tokens = shlex.split(entry["overrides"])
            if tokens[:1] != [f"strategy={method}"]:
                raise SystemExit(f"error: {path.name}: {method} was run with {tokens}")
            common = shlex.join(tokens[1:])
            rerun = partial(rerun_digits, prepared, method, common, torch_threads)
            results.append(Result(f"digits:{path.name}:{method}", rerun, entry, compare_digits))
    return results


# -- the NB201 suite ---------------------------------------------------------------------


def hydra_value(value: Any) -> str:
    """`value` in Hydra's override grammar."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, list):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no Hydra form for {value!r}")


class Options:
    """Every option of a config group as `conf/benchmark.yaml` composes it (cached)."""

    def __init__(self) -> None:
        self._groups: dict[str, dict[str, dict[str, Any]]] = {}

    def group(self, name: str) -> dict[str, dict[str, Any]]:
        if name not in self._groups:
            from hydra import compose, initialize_config_dir
            from omegaconf import OmegaConf

            from nasflow.config import register_configs

            register_configs()
            composed = {}
            with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
                for path in sorted((ROOT / "conf" / name).glob("*.yaml")):
                    try:
                        cfg = compose(config_name="benchmark", overrides=[f"{name}={path.stem}"])
                        composed[path.stem] = OmegaConf.to_container(cfg[name], resolve=True)
                    except Exception:  # an option the benchmark cannot compose is not a match
                        continue
            self._groups[name] = composed
        return self._groups[name]

    def closest(self, name: str, recorded: dict[str, Any], ignore: set[str]) -> list[str]:
        """Overrides that make group `name` compose to `recorded` (leaves in `ignore`
        aside): the option of the same class with the fewest differences, then one override
        per recorded leaf that differs. Settings the option has and `recorded` lacks (added
        since) keep the option's value, which the comparison then judges."""
        missing = object()
        want = {k: v for k, v in flatten(recorded).items() if k not in ignore}
        best: tuple[int, list[str]] | None = None
        for option, config in self.group(name).items():
            if not same_leaf("_target_", recorded.get("_target_"), config.get("_target_")):
                continue
            have = flatten(config)
            overrides = [f"{name}={option}"]
            overrides += [
                f"{'' if key in have else '+'}{name}.{key}={hydra_value(value)}"
                for key, value in want.items()
                if not same_leaf(key, value, have.get(key, missing))
            ]
            if best is None or len(overrides) < best[0]:
                best = (len(overrides), overrides)
        if best is None:
            raise SystemExit(f"error: no {name} option builds {recorded.get('_target_')}")
        return best[1]


def rerun_nb201(options: Options, report: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """`pipelines/benchmark.py` with the settings `report` records, into `scratch`."""
    settings = report["settings"]
    overrides = options.closest("strategy", settings["strategy"], {"budget", "seed"})
    if "estimator" in settings:  # older JSONs ran the default, nb201_table
        overrides += options.closest("estimator", settings["estimator"], set())
    overrides += [
        f"benchmark.seeds={settings['seeds']}",
        f"benchmark.queries={settings['queries']}",
        f"benchmark.name={report['strategy']}",
        f"benchmark.output={scratch}",
        f"hydra.run.dir={scratch / 'hydra'}",
    ]
    with threads(1):
        done = subprocess.run(
            [sys.executable, str(ROOT / "pipelines" / "benchmark.py"), *overrides],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
    if done.returncode != 0:
        raise RerunFailed(last_line(done.stderr))
    return json.loads((scratch / f"{report['strategy']}.json").read_text())


def nb201_results(max_seconds: float) -> list[Result]:
    options = Options()
    results = []
    for path in sorted(NB201.glob("benchmark*/*.json")):
        report = json.loads(path.read_text())
        if report.get("kind") != "nasflow.benchmark/1":
            continue
        name = f"nb201:{path.parent.name}/{path.name}"
        recorded_seconds = report["seconds"]["total"]
        skip = (
            f"recorded {recorded_seconds:.0f} s, over --max-seconds {max_seconds:g}"
            if recorded_seconds > max_seconds
            else None
        )

        rerun = partial(rerun_nb201, options, report)
        results.append(Result(name, rerun, report, compare_nb201, skip))
    return results


# -- running -----------------------------------------------------------------------------


def machine_line() -> str:
    recorded = set()
    for path in [*DIGITS.glob("oneshot_digits*.json"), *NB201.glob("benchmark*/*.json")]:
        machine = json.loads(path.read_text()).get("machine", {})
        recorded.add(machine.get("platform"))
    return (
        f"this machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.backends.cpu.get_cpu_capability()}); recorded on: "
        + ", ".join(sorted(str(p) for p in recorded))
    )


def run(result: Result, scratch: Path) -> tuple[str, bool]:
    """The result's line, and whether it reproduced (a skip counts as reproduced)."""
    if result.skip:
        return f"skipped  {result.id}: {result.skip}", True
    start = time.perf_counter()
    folder = scratch / result.id.replace(":", "_").replace("/", "_")
    try:
        rerun = result.rerun(folder)
    except RerunFailed as error:
        return f"FAILED   {result.id}: {error}", False
    seconds = time.perf_counter() - start
    differences = result.compare(result.recorded, rerun)
    if differences:
        return f"DIFFERS  {result.id}: {'; '.join(differences)} ({seconds:.0f} s)", False
    return f"match    {result.id} ({seconds:.0f} s)", True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", nargs="+", choices=SUITES, default=list(SUITES))
    parser.add_argument("--quick", action="store_true", help="only " + ", ".join(QUICK))
    parser.add_argument(
        "--only", nargs="+", default=None, help="results whose id contains one of these"
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=120.0,
        help="skip NB201 results that took longer when recorded (default 120)",
    )
    parser.add_argument(
        "--prepared",
        type=Path,
        default=ROOT / "data" / "prepared",
        help="the prepared digits data (default data/prepared; its tensors must be the ones "
        "the results were recorded on)",
    )
    parser.add_argument("--list", action="store_true", help="list the result ids and exit")
    args = parser.parse_args()

    results = []
    if "digits" in args.suite:
        results += digits_results(args.prepared.resolve())
    if "nb201" in args.suite:
        results += nb201_results(args.max_seconds)
    if args.quick:
        results = [r for r in results if r.id in QUICK]
    if args.only:
        results = [r for r in results if any(part in r.id for part in args.only)]
    if args.list:
        for result in results:
            print(result.id + (f"  (skipped: {result.skip})" if result.skip else ""))
        return
    needs_data = any(r.id.startswith("digits:") and not r.skip for r in results)
    if needs_data and not (args.prepared / "meta.json").is_file():
        sys.exit(f"error: no prepared data in {args.prepared}: run `dvc repro prepare` first")

    print(machine_line(), flush=True)
    start = time.perf_counter()
    reproduced = True
    with tempfile.TemporaryDirectory(prefix="nasflow-reproduce-") as scratch:
        for result in results:
            line, ok = run(result, Path(scratch))
            print(line, flush=True)
            reproduced &= ok
    ran = sum(1 for r in results if not r.skip)
    verdict = "all reproduced" if reproduced else "NOT all reproduced"
    seconds = time.perf_counter() - start
    print(f"{verdict}: {ran} re-run, {len(results) - ran} skipped, {seconds:.0f} s")
    sys.exit(0 if reproduced else 1)


if __name__ == "__main__":
    main()
