"""Building blocks shared by several tokenizer families (transformer blocks, VQ, the base 2D tokenizer holder)."""
