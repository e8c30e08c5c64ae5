"""Fold the changes/*.md fragments into CHANGELOG.md's [Unreleased] section, then delete them.

Each fragment holds ``### Added`` / ``### Changed`` / ``### Fixed`` ... sections of
bullets (Keep a Changelog). Used when merging branches; run from the repository root:
``python tools/merge_changes.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ORDER = ["Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"]


def sections(text: str) -> dict[str, list[str]]:
    """The bullets of each ``### Section`` of a changelog fragment, in order."""
    out: dict[str, list[str]] = {}
    current = "Changed"
    for block in re.split(r"^(?=### |- )", text, flags=re.MULTILINE):
        if block.startswith("### "):
            current = block[4:].strip().split("\n", 1)[0]
            rest = block.split("\n", 1)[1] if "\n" in block else ""
            if rest.strip():
                out.setdefault(current, []).append(rest.strip())
        elif block.strip():
            bullet = block.strip()
            named = re.match(r"- (Added|Changed|Deprecated|Removed|Fixed|Security): ", bullet)
            if named:  # a bullet that names its own section
                bullet = "- " + bullet[named.end() :]
                bullet = bullet[:2] + bullet[2].upper() + bullet[3:]
                out.setdefault(named.group(1), []).append(bullet)
            else:
                out.setdefault(current, []).append(bullet)
    return out


def main() -> None:
    changelog = ROOT / "CHANGELOG.md"
    text = changelog.read_text(encoding="utf-8")
    head, _, tail = text.partition("## [Unreleased]\n")
    body, sep, rest = tail.partition("\n## [")
    merged = sections(body)
    fragments = sorted((ROOT / "changes").glob("*.md"))
    for fragment in fragments:
        for name, bullets in sections(fragment.read_text(encoding="utf-8")).items():
            have = merged.setdefault(name, [])
            have.extend(b for b in bullets if b not in have)
    parts = []
    for name in [*ORDER, *(n for n in merged if n not in ORDER)]:
        bullets = [b for b in merged.get(name, []) if not b.startswith("[Unreleased]:")]
        if bullets:
            parts.append(f"### {name}\n\n" + "\n".join(bullets) + "\n")
    links = re.findall(r"^\[Unreleased\]:.*$", body, flags=re.MULTILINE)
    link = ("\n" + "\n".join(links) + "\n") if links else ""
    new = head + "## [Unreleased]\n\n" + "\n".join(parts) + link + (sep + rest if sep else "")
    changelog.write_text(new, encoding="utf-8")
    for fragment in fragments:
        fragment.unlink()


if __name__ == "__main__":
    main()
