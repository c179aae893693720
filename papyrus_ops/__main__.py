"""`python -m papyrus_ops` is `papyrus-ops`."""

from papyrus_ops.cli import main

main()
