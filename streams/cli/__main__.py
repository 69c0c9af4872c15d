"""``python -m streams.cli``: the ``cems`` command."""

from streams.cli import main

main()
