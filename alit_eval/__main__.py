"""Entry point for `python -m alit_eval` (and `torchrun -m alit_eval ...`)."""

from alit_eval.cli.app import main

if __name__ == "__main__":
    main()
