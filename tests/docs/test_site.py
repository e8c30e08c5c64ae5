"""The documentation site builds with ``mkdocs build --strict``, with every page and name.

A broken link or anchor, an unknown generate marker, an API object mkdocstrings cannot
find, or a docstring griffe cannot parse fails the build (strict mode).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import eventwire
from tests.docs import snippets

PAGES = [
    "index.html",
    "getting-started/index.html",
    "concepts/delivery-guarantee/index.html",
    "concepts/failures/index.html",
    "concepts/ordering/index.html",
    "concepts/wire-contract/index.html",
    "guides/publishing/index.html",
    "guides/configuration/index.html",
    "guides/outbox/index.html",
    "guides/async-outbox/index.html",
    "guides/observability/index.html",
    "guides/testing/index.html",
    "guides/testing-async/index.html",
    "guides/asyncio/index.html",
    "guides/frameworks/index.html",
    "guides/consuming/index.html",
    "guides/schemas/index.html",
    "guides/schemas-pydantic/index.html",
    "reference/api/eventwire/index.html",
    "reference/api/testing/index.html",
    "reference/api/outbox/index.html",
    "reference/api/observability/index.html",
    "reference/api/schema_registry/index.html",
    "reference/api/contracts/index.html",
    "reference/api/transports/index.html",
    "reference/cli/index.html",
    "reference/config-keys/index.html",
    "reference/error-codes/index.html",
    "reference/metrics/index.html",
    "reference/log-events/index.html",
    "performance/index.html",
    "deprecation/index.html",
    "changelog/index.html",
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site, built with --strict from this checkout's mkdocs.yml."""
    out = tmp_path_factory.mktemp("site")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(snippets.ROOT / "src"), os.environ.get("PYTHONPATH", "")]
        ),
        "NO_MKDOCS_2_WARNING": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=snippets.ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_site_has_every_page(site: Path) -> None:
    """Each page of the nav is built (and no page is left out of the nav: strict)."""
    built = sorted(p.relative_to(site).as_posix() for p in site.rglob("index.html"))
    missing = [page for page in PAGES if page not in built]
    assert missing == [], built


def test_api_reference_documents_the_curated_public_api(site: Path) -> None:
    """Every name of eventwire.__all__ is documented on the API page (or pointed to)."""
    text = (site / "reference/api/eventwire/index.html").read_text(encoding="utf-8")
    documented = set(re.findall(r'id="eventwire\.([A-Za-z_]+)"', text))
    pointed_to = {"PROFILES", "Profile"}  # data: described with the profiles table
    assert set(eventwire.__all__) - pointed_to <= documented
    assert all(name in text for name in pointed_to)


def test_reference_tables_are_rendered(site: Path) -> None:
    """The generated tables reach the HTML (no marker is left as a comment)."""
    for page in ("reference/metrics", "reference/log-events", "reference/config-keys"):
        text = (site / page / "index.html").read_text(encoding="utf-8")
        assert "eventwire:generate" not in text
        assert "<table>" in text


def test_changelog_page_includes_the_changelog(site: Path) -> None:
    """docs/changelog.md pulls in CHANGELOG.md (its [Unreleased] section at least)."""
    text = (site / "changelog/index.html").read_text(encoding="utf-8")
    assert "Unreleased" in text
