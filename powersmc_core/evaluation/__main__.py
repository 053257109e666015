"""``python -m powersmc_core.evaluation ...``: the eval subcommand on its own."""

import argparse
import sys

from powersmc_core.evaluation.cli import add_arguments, main

parser = argparse.ArgumentParser(prog="python -m powersmc_core.evaluation")
add_arguments(parser)
sys.exit(main(parser.parse_args()))
