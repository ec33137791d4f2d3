"""Analyses over the engine's sweep: one module per command, built from shared primitives.

Layout (issue 14; this replaces the list in DESIGN.md, which named ``reconstruction.py``,
``allocation.py`` and ``attention.py``):

Commands, one module each, named after the command (``alit-eval fid`` -> ``fid.py``). Each has a
``run`` that plans its sweep, runs it in a run folder through the shared skeleton and writes its
own tables and figures. Command modules never import each other:

    fid.py  allocate.py  entropy_correlation.py  familiarity.py  downstream.py  attention_viz.py
    discovery.py  rate_distortion.py  profile.py  fid_stats.py

The run skeleton every command uses (run folder, sweep, standard meta.json fields):

    skeleton.py

Primitives (no run folders, no command options), shared by the commands:

    stats.py              bootstrap confidence intervals
    quality.py            mean per-image metrics and rFID per budget (metric rows)
    token_selection.py    the token selection criterion: per-image budgets at a threshold
    selection_summary.py  what a selection costs and buys: tokens, censoring, variable FID, galleries
    complexity.py         image complexity measures (PNG/JPEG bpp, entropy, gradients, edges, ...)
    correlation.py        correlations and group comparisons with bootstrap CIs
    probe.py              token features and linear probes
    attention_maps.py     decoder attention maps of the 1D tokens over the 2D grid
    flops.py              FLOP counting, parameter counts and latency per budget
    codec_search.py       JPEG/WebP at a bit budget: the quality search and its metrics

Metric names, directions, units and display formats come from `alit_eval.metrics.specs`.
"""
