"""The ``resilient-mcp`` command line: list, call, probe and load any MCP server.

Needs the ``cli`` extra (``pip install 'resilient-mcp[cli]'``). Without it, ``main()``
prints that command and exits non-zero instead of failing with an import traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]

_INSTALL = "pip install 'resilient-mcp[cli]'"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default: ``sys.argv[1:]``) and return its exit code.

    As a console script the return value becomes the process status (see
    ``resilient_mcp.cli._exit.Exit`` for the table).
    """
    try:
        import click  # noqa: F401
        import rich  # noqa: F401
    except ImportError:
        print(f"resilient-mcp: the command line needs its extra: {_INSTALL}", file=sys.stderr)
        return 1
    from ._app import run

    return run(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
