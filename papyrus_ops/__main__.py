"""`python -m papyrus_ops` is `papyrus-ops` (through the warm interpreter: papyrus_ops.warm)."""

from papyrus_ops.warm import main

main()
