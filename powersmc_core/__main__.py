"""``python -m powersmc_core {run,bench,eval} ...`` (see ``powersmc_core.cli``)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
