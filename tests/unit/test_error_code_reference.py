"""The error-code reference page is generated from the policy and cannot drift from it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_error_code_page_matches_the_policy() -> None:
    """docs/reference/error-codes.md is what tools/gen_error_codes.py writes today; if this
    fails, run ``python tools/gen_error_codes.py`` and commit the page."""
    spec = importlib.util.spec_from_file_location(
        "gen_error_codes", ROOT / "tools/gen_error_codes.py"
    )
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    page = (ROOT / "docs/reference/error-codes.md").read_text(encoding="utf-8")
    assert page == gen.render()


def test_every_code_eventwire_itself_reports_is_in_the_reference() -> None:
    """The codes eventwire invents (leading underscore, set in its own code) each have a row."""
    from eventwire._policy import KNOWN_CODES

    own = {
        "_CLOSED",
        "_NOT_REPORTED",
        "_FLUSH_TIMEOUT",
        "_IN_OUTBOX",
        "_OUTBOX_WRITE_FAILED",
        "_OUTBOX_WRITE_UNKNOWN",
        "_EVENT_ID_CONFLICT",
        "_QUEUE_FULL",
        "_FATAL",
    }
    assert own <= set(KNOWN_CODES)
    page = (ROOT / "docs/reference/error-codes.md").read_text(encoding="utf-8")
    assert all(f"| `{code}` |" in page for code in own)
