"""`python -m attrib_core COMMAND ...`: the same door as the `attrib-bench` console script."""

import sys

from attrib_core.commands.cli import main

sys.exit(main())
