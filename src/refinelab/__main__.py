"""``python -m refinelab``: the same as the ``refinelab`` command."""

import sys

from refinelab.cli.main import main

sys.exit(main())
