"""What is evaluated: adaptive-length image tokenizers behind one family registry.

`base.py` is the protocol every tokenizer implements (``rollout(images, budgets) -> Rollout``);
`families.py` the registry (a family is a folder plus one `Family` entry: ``alit/``, ``karl/``,
``one_d_piece/``, ``flextok/``; ``base2d/`` holds the frozen 2D bases they build on), with
`family_options.py` (every family's inference options, run identity), `family_loading.py`
(detect, `load_any`, `convert_any`) and `family_queries.py` (what a loaded tokenizer's family
says: budgets, rollout keywords, attention, tokens used); `pretrained.py` the release table;
`resolve.py` a name or path to a local file (`resolve_checkpoint`) and `load_pretrained`;
`download.py` fetching into the cache; `digests.py` sha256 sidecars and `checkpoint_sha256`;
`checkpoints.py` safe checkpoint reading (and the ALIT loader `load_alit_checkpoint`);
`validate.py` config bounds; `flops.py` closed-form block FLOPs;
`generators.py` and `criteria.py` the shims the engine uses for randomness and model criteria.
"""
