"""`python -m fitboard.worker.cli`: the fitboard command line."""
import sys

from fitboard.worker.cli import main

sys.exit(main())
