"""``python -m app.cli``: the ``animalpose`` command line."""

import sys

from app.cli import main

sys.exit(main())
