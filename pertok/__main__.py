"""Entry point of `python -m pertok`."""
import sys

from pertok.cli import main

sys.exit(main())
