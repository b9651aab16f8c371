"""Write docs/commands.md from the registry: ``python -m shell.docs [PATH]``."""

from __future__ import annotations

import sys
from pathlib import Path

from shell.commands import build_registry

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else Path("docs/commands.md")
    path.write_text(build_registry().markdown())
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
