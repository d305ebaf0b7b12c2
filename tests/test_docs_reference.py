"""Every public name has an entry in the API reference (docs/reference/).

The site's build (`make site`, in `make test`) renders these entries with --strict, so
an entry whose name does not resolve fails there; this test catches the name that was
exported and never given an entry.
"""

from __future__ import annotations

import re
from pathlib import Path

import resilient_mcp

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "reference"
PUBLIC_MODULES = ("types", "testing", "auth", "otel")


def _entries() -> set[str]:
    text = "\n".join(page.read_text(encoding="utf-8") for page in REFERENCE.glob("*.md"))
    return set(re.findall(r"^::: (resilient_mcp[\w.]*)\s*$", text, re.MULTILINE))


def test_every_public_name_has_a_reference_entry() -> None:
    entries = _entries()
    missing = [n for n in resilient_mcp.__all__ if f"resilient_mcp.{n}" not in entries]
    assert missing == []


def test_the_public_modules_and_every_adapter_are_in_the_reference() -> None:
    entries = _entries()
    adapters = sorted(
        f"resilient_mcp.integrations.{p.stem}"
        for p in (REFERENCE.parent.parent / "resilient_mcp" / "integrations").glob("*.py")
        if not p.stem.startswith("_")
    )
    modules = [f"resilient_mcp.{m}" for m in PUBLIC_MODULES]
    assert [m for m in modules + adapters if m not in entries] == []
