"""``python -m resilient_mcp.cli``."""

import sys

from resilient_mcp.cli import main

sys.exit(main())
