"""``python -m jaxlif``: the ``jaxlif`` command."""

import sys

from jaxlif.cli import main

sys.exit(main())
