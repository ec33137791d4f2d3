"""FlexTok (Bachmann et al., ICML 2025): register tokens decoded by a rectified-flow decoder, any prefix 1..256."""
