"""`python -m normpipe`: the same command line as the `normpipe` script."""

import sys

from normpipe.pipeline.cli import main

sys.exit(main())
