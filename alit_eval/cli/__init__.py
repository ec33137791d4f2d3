"""The ``alit-eval`` command line (Typer): app.py composes one small module per command."""
