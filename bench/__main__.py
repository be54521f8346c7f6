"""`python -m bench`: the whole benchmark (see bench/cli.py for its options)."""

from bench.cli import main

main()
