"""`python -m parity.port` (see `parity.port.cli`)."""

import sys

from parity.port.cli import main

if __name__ == "__main__":
    sys.exit(main())
