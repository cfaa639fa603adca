"""``python -m pyro_vi``: the ``pyro-vi`` command, for ``torchrun -m pyro_vi train ...`` and for
environments where the console script is not on ``PATH``."""

import sys

from pyro_vi.cli import main

if __name__ == "__main__":
    sys.exit(main())
