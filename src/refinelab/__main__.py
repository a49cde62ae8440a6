"""``python -m refinelab``: the same as the ``refinelab`` command."""

import sys

from refinelab.cli import main

sys.exit(main())
