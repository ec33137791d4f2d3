"""Analyses over the engine's sweep: one module per command, built from shared primitives.

Commands, one module each, with a ``run`` that plans its sweep, runs it in a run folder through
the shared skeleton and writes its own tables and figures. Command modules never import each other:

    reconstruction.py (fid)  allocate.py  model_allocation.py (allocate under a model criterion)
    entropy_correlation.py  familiarity.py  compare.py  downstream.py  attention_viz.py
    discovery.py  rate_distortion.py  profile.py  fid_stats.py

The run skeleton every command uses (run folder, sweep, standard meta.json fields, summary):

    skeleton.py

Primitives (no run folders, no command options), shared by the commands:

    stats.py              the percentile bootstrap (resampling, intervals, CI of a mean)
    quality.py            mean per-image metrics and each measure's per-set rows (rFID, KID) per budget
    paired.py             paired comparisons of two tokenizers on the same images (Wilcoxon, matched tokens)
    token_selection.py    the token selection criterion: per-image budgets at a threshold
    selection_summary.py  what a selection costs and buys: tokens, censoring, variable FID, galleries
    signal.py             whether the selection metric moves with the budget at all (a guard)
    complexity.py         image complexity measures (PNG/JPEG bpp, entropy, gradients, edges, ...)
    correlation.py        correlations and group comparisons with bootstrap CIs
    probe.py              token features and linear probes
    attention_maps.py     decoder attention maps of the 1D tokens over the 2D grid
    flops.py              FLOP counting, parameter counts and latency per budget
    codec_search.py       JPEG/WebP at a bit budget: the quality search and its metrics
    labelled.py           ``LABEL=VALUE`` option values (compare, familiarity)

Metric names, directions, units and display formats come from `alit_eval.metrics.specs`; what is
measured comes from the measure registry `alit_eval.metrics.measures`.
"""
