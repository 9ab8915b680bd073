"""python -m cadenza vary|perform|generate ..."""
import sys

from cadenza.cli import main

sys.exit(main(sys.argv[1:]))
