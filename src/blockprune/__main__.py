"""``python -m blockprune <command> ...``: the same as the ``blockprune`` console script
(``python -m blockprune train model=tiny`` runs one Hydra job; ``--help`` lists the commands)."""

import sys

from blockprune.cli import main

if __name__ == "__main__":
    sys.exit(main())
