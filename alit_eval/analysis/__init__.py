"""Analyses over the engine's per-image table: reconstruction, complexity, familiarity, probes,
allocation and attention."""
