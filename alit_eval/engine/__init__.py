"""The sweep engine: one loop over data x budgets (sweep.py) and its resumable store (store.py)."""
