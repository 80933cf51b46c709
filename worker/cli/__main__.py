"""`python -m worker.cli`: the fitboard command line."""
import sys

from worker.cli import main

sys.exit(main())
