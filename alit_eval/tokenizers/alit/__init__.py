"""Clean-room re-implementation of ALIT (Duggal et al., ICLR 2025) that loads the official weights."""
