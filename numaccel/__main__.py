"""``python -m numaccel``: runs the demo (see ``numaccel.cli``)."""

import sys

from .cli import main

sys.exit(main(sys.argv[1:]))
