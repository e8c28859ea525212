"""`python -m relay <command>`: see relay/cli.py."""

import sys

from relay.cli import main

if __name__ == "__main__":
    sys.exit(main())
