"""The run skeleton every analysis command shares: open the run folder, run the sweep, finish.

A command plans its sweep (`alit_eval.engine.plan.plan_sweep`: load the tokenizer, or read an
earlier run for ``--from-run``), adds its own entries to the config, then::

    with CommandRun("allocate", config, plan, results_dir=..., run_id=..., overwrite=...) as run:
        inputs = run.sweep()         # the sweep, run (or resumed) in the run folder, or reused
        ...                          # the command's own tables and figures into run.dir
        run.finish(seed, {...})      # meta.json: the standard fields + the command's own

`standard_meta` is the one place the fields every sweep-based run records are built (checkpoint,
dataset, preprocess and where each defaulted option came from, skipped images, ...); `RunDir.finish`
adds config, seed, package versions and wall time. The lock is released however the block ends.

Console summary: `finish` also builds the run's short summary (`summary_lines`: images used and
skipped, preprocess and resolution, padded and duplicate images, the FID reference and its size,
a warning when rFID rests on few images) and records it in meta.json; the CLI prints it from the
returned run folder (``run_dir.meta``, `alit_eval.errors.run_summary`) after the command's own output.

A finished run is not recomputed when the caller asks for it (``CommandRun(..., reuse_finished=True)``,
as the CLI does): a run folder that already holds a complete run (``meta.json``) of the same config,
whose images are unchanged (`alit_eval.engine.identity.verify_resume`) and all handled, raises
`alit_eval.errors.RunFinished` on entry; the CLI prints the stored table and summary at once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from alit_eval.engine.plan import SweepInputs, SweepPlan
from alit_eval.errors import RunFinished
from alit_eval.printable import printable
from alit_eval.results.rundir import RunDir, open_run

RFID_MIN_IMAGES = 2048  # below this, rFID is strongly biased upwards (Inception features are 2048-d)
FIRST_REASONS = 3  # how many skipped images the summary names


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


def image_size(inputs: SweepInputs) -> int | None:
    """The side of the images the tokenizer saw (None when the run does not say)."""
    source = inputs._source
    size = getattr(getattr(source, "dataset", None), "size", None) if source is not None else None
    return int(size) if size else (inputs.config.get("image_size") or inputs.config.get("data", {}).get("size"))


def summary_lines(inputs: SweepInputs, extra: dict[str, Any]) -> list[str]:
    """The run's console summary; a line starting with ``warning:`` is a warning.

    Args:
        inputs: the sweep the run consumed.
        extra: the command's meta.json fields (``fid_reference``, ``fid_reference_n``, ...).
    """
    failed = inputs.result.failed
    used = int(inputs.result.per_image["image_id"].nunique()) if len(inputs.result.per_image) else 0
    line = f"images: {used} used, {len(failed)} skipped"
    if failed:
        reasons = "; ".join(f"{i}: {e}" for i, e in failed[:FIRST_REASONS])
        line += f" ({reasons}{'; ...' if len(failed) > FIRST_REASONS else ''})"
    lines = [line]
    size = image_size(inputs)
    lines.append(f"preprocess: {inputs.preprocess}" + (f" to {size}x{size} px" if size else ""))
    source = inputs._source
    if source is not None:
        lines += [f"warning: {w}" for w in source.warnings] + [f"note: {n}" for n in source.notes]
    fid_on = bool(inputs.config.get("fid", inputs.config.get("sweep", {}).get("fid", False)))
    if fid_on and inputs.result.info.get("inception") is not None:
        reference = extra.get("fid_reference") or "originals"
        n_ref = extra.get("fid_reference_n") if reference != "originals" else used
        lines.append(f"FID reference: {reference} ({n_ref if n_ref is not None else 'unknown number of'} images)")
        fewest = min(used, n_ref) if isinstance(n_ref, int) else used
        if fewest < RFID_MIN_IMAGES:
            lines.append(f"warning: rFID rests on {fewest} images (< {RFID_MIN_IMAGES}): it is biased upwards and "
                         "not comparable with published 50k-image numbers")
    return [printable(line) for line in lines]  # skipped and duplicate images are named by their files


def data_checks_meta(inputs: SweepInputs) -> dict[str, Any]:
    """meta.json fields of the data source's checks: padded and duplicate image counts, non-RGB images by mode."""
    source = inputs._source
    if source is None:
        return {}
    return {"padded_images": len(source.padded), "duplicate_images": len(source.duplicates),
            "converted_to_rgb": {mode: len(ids) for mode, ids in sorted(source.converted.items())}}
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
        on_resume: called with the folder when it holds an earlier run of this config, before it is
            judged finished (it may drop shards so that the sweep recomputes them).

        reuse_finished: raise `RunFinished` on entry when the folder holds this finished run (the CLI
            asks for it; Python callers get the run recomputed from its shards by default).
    """

    def __init__(self, command: str, config: dict[str, Any], plan: SweepPlan | None = None, *, results_dir: Any,
                 run_id: str | None = None, overwrite: bool = False, out: Any = None,
                 on_resume: Callable[[Path], Any] | None = None, reuse_finished: bool = False) -> None:
        self.command, self.config, self.plan, self.on_resume = command, config, plan, on_resume
        self.reuse_finished = reuse_finished
        self._where = {"results_dir": results_dir, "run_id": run_id, "overwrite": overwrite, "out": out}
        self.dir: RunDir | None = None
        self.inputs: SweepInputs | None = None

    def __enter__(self) -> "CommandRun":
        self.dir = open_command_run(self.command, self.config, **self._where)
        if self.on_resume is not None and self.dir.resumed:  # e.g. fid --save-recons: redo images lacking PNGs
            try:
                self.on_resume(self.dir.path)
            except BaseException:  # __exit__ does not run when __enter__ fails: release the lock here
                self.dir.release()
                raise
        if self.reuse_finished and self._finished():
            meta = self.dir.previous_meta or {}
            self.dir.release()
            raise RunFinished(self.dir.path, meta)
        return self

    def _finished(self) -> bool:
        """Whether the folder holds this finished run, with every image unchanged and handled."""
        run = self.dir
        prepared = self.plan.prepared if self.plan is not None else None
        if run is None or not run.resumed or not run.previous_meta or prepared is None:
            return False
        if os.environ.get("WORLD_SIZE", "1") != "1":  # torchrun: every rank must take the same path
            return False
        from alit_eval.engine.identity import verify_resume
        from alit_eval.engine.store import ShardStore
        from alit_eval.tokenizers.family_options import uses_global_stream

        store = ShardStore(run.path)
        dataset = prepared.source.dataset
        # Changed images or damaged shards are dropped here and recomputed by the sweep that follows.
        if verify_resume(store, dataset, official_stream=uses_global_stream(prepared.sweep.options)):
            return False
        return len(store.done()) >= len(dataset)

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
        if self.inputs is not None:
            fields.update(data_checks_meta(self.inputs))
            summary = summary_lines(self.inputs, {**fields, **extra})
            fields["summary"] = summary
        if device is None and self.inputs is not None:
            device = self.inputs.result.info.get("device")
        return self.dir.finish(seed=seed, device=device, extra={**fields, **extra})

    def __exit__(self, *exc: object) -> None:
        if self.dir is not None:
            self.dir.release()
