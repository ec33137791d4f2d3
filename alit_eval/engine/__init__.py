"""The sweep engine: the one loop over images x budgets that every command runs.

    config.py       `SweepConfig` (every sweep option) and its default resolution
    prepare.py      `prepare`: load the tokenizer, resolve defaults, open the data, build config.json
    plan.py         `plan_sweep` / `SweepPlan`: run the sweep, or reuse a finished one (``--from-run``)
    sweep.py        `run_sweep`: rollout per batch, uint8, the registered measures, one shard per batch
    store.py        the resumable shard store (``shards/*.npz``)
    identity.py     source-file identities, so a resumed run never mixes changed images
    device.py       ``--device`` to a torch device
    fastpath.py     precision, channels-last, compile, batch-size back-off
    distributed.py  torchrun: batches split across processes without padding
    recons.py       ``--save-recons``: the measured reconstructions as PNGs

What is measured per image and per set comes from `alit_eval.metrics.measures` (a registry).
"""
