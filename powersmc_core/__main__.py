"""``python -m powersmc_core {run,bench,eval} ...`` (see ``powersmc_core.cli.main``)."""

from powersmc_core.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
