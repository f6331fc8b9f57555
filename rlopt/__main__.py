"""``python -m rlopt ...``: the same entry point as the ``rlopt`` console script."""

import sys

from rlopt.cli import main

sys.exit(main())
