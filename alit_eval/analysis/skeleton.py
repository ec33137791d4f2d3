"""The run skeleton every analysis command shares: open the run folder, run the sweep, finish.

A command plans its sweep (`alit_eval.engine.reuse.plan_sweep`: load the tokenizer, or read an
earlier run for ``--from-run``), adds its own entries to the config, then::

    with CommandRun("allocate", config, plan, results_dir=..., run_id=..., overwrite=...) as run:
        inputs = run.sweep()         # the sweep, run (or resumed) in the run folder, or reused
        ...                          # the command's own tables and figures into run.dir
        run.finish(seed, {...})      # meta.json: the standard fields + the command's own

`standard_meta` is the one place the fields every sweep-based run records are built (checkpoint,
dataset, preprocess and where each defaulted option came from, skipped images, ...); `RunDir.finish`
adds config, seed, package versions and wall time. The lock is released however the block ends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from alit_eval.engine.reuse import SweepInputs, SweepPlan
from alit_eval.results.io import RunDir, open_run


def open_command_run(command: str, config: dict[str, Any], *, results_dir: Any, run_id: str | None = None,
                     overwrite: bool = False, out: Any = None) -> RunDir:
    """Open (create, resume or replace) ``<results_dir>/<command>/<run_id>``, or the folder `out`."""
    if out is not None:
        out = Path(out)
        return open_run(out.parent, "", run_id=out.name, config=config, overwrite=overwrite)
    return open_run(results_dir, command, run_id=run_id, config=config, overwrite=overwrite)


def skipped_images(inputs: SweepInputs) -> list[dict[str, str]]:
    """The images the sweep could not decode, as meta.json records them."""
    return [{"id": i, "error": e} for i, e in inputs.result.failed]


def standard_meta(inputs: SweepInputs) -> dict[str, Any]:
    """The meta.json fields of every sweep-based run (a command may override any of them)."""
    result = inputs.result
    return {
        "checkpoint": inputs.checkpoint, "dataset": {"name": inputs.dataset, **inputs.config.get("data", {})},
        "preprocess": inputs.preprocess, "resolved_from": inputs.resolved_from, "from_run": inputs.from_run,
        "rollout_calls": result.rollout_calls, "halting": result.info.get("halting"),
        "inception": result.info.get("inception"), "lpips": result.info.get("lpips"),
        "skipped_images": skipped_images(inputs), "n_images": int(result.per_image["image_id"].nunique()),
    }


def figure_title(inputs: SweepInputs, command: str) -> str:
    """The title of a run's figures: command, checkpoint, data and number of images (from the run's meta)."""
    from alit_eval.results.labels import title_from_meta

    return title_from_meta(standard_meta(inputs), what=command)


def dataset_meta(inputs: SweepInputs) -> dict[str, Any]:
    """Per-dataset meta.json fields of a run over several sweeps (`familiarity`)."""
    return {"source": inputs.config.get("data", {}).get("source"), "from_run": inputs.from_run,
            "preprocess": inputs.preprocess, "resolved_from": inputs.resolved_from,
            "rollout_calls": inputs.result.rollout_calls,
            "n_images": int(inputs.result.per_image["image_id"].nunique()), "skipped_images": skipped_images(inputs)}


class CommandRun:
    """One command's run folder, its sweep and its meta.json (a context manager; see the module docstring).

    Args:
        command: the command name (the first folder level under the results folder).
        config: everything that determines the outputs (config.json; its hash is the default run id).
        plan: the sweep to run or reuse; None for a command without a sweep (`profile`).
        results_dir, run_id, overwrite, out: where the run folder is (`open_command_run`).
    """

    def __init__(self, command: str, config: dict[str, Any], plan: SweepPlan | None = None, *, results_dir: Any,
                 run_id: str | None = None, overwrite: bool = False, out: Any = None) -> None:
        self.command, self.config, self.plan = command, config, plan
        self._where = {"results_dir": results_dir, "run_id": run_id, "overwrite": overwrite, "out": out}
        self.dir: RunDir | None = None
        self.inputs: SweepInputs | None = None

    def __enter__(self) -> "CommandRun":
        self.dir = open_command_run(self.command, self.config, **self._where)
        return self

    def sweep(self, *, on_batch: Callable[[int], None] | None = None, tokenizer: Any = None,
              dist: Any = None) -> SweepInputs:
        """Run (or resume) the planned sweep in the run folder, or take the reused one (`SweepPlan.execute`)."""
        assert self.dir is not None and self.plan is not None
        self.inputs = self.plan.execute(self.dir.path, on_batch=on_batch, tokenizer=tokenizer, dist=dist)
        return self.inputs

    def finish(self, seed: int | None, extra: dict[str, Any], *, device: str | None = None,
               standard: bool = True) -> dict[str, Any]:
        """Write meta.json: `standard_meta` of the sweep (unless ``standard=False``), then `extra`."""
        assert self.dir is not None
        fields = standard_meta(self.inputs) if standard and self.inputs is not None else {}
        if device is None and self.inputs is not None:
            device = self.inputs.result.info.get("device")
        return self.dir.finish(seed=seed, device=device, extra={**fields, **extra})

    def __exit__(self, *exc: object) -> None:
        if self.dir is not None:
            self.dir.release()
