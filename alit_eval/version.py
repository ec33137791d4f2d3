"""The package version, in a module of its own so code inside the package can read it without
importing the package's ``__init__`` (which reaches the API lazily: that would be an import cycle)."""

__version__ = "0.1.0"
