"""One-D-Piece (TiTok with tail-token drop) and plain TiTok: prefix-decoding 1D tokenizers."""
