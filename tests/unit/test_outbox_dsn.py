"""mask_dsn / scrub_dsn: a PostgreSQL DSN's passwords never shown (review item 17)."""

from __future__ import annotations

import pytest

from eventwire.outbox._dsn import dsn_passwords, hide_quoted, mask_dsn, scrub_dsn


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("host=db user=app password=s3cret dbname=x", "host=db user=app password=*** dbname=x"),
        ("host=db password = s3cret", "host=db password = ***"),
        ("host=db password='two words\\' here' port=5", "host=db password=*** port=5"),
        ("host=db password=two words port=5", "host=db password=*** port=5"),
        ("host=db sslpassword=key-pass", "host=db sslpassword=***"),
        ("postgresql://app:s3cret@db:5432/app", "postgresql://app:***@db:5432/app"),
        ("postgres://app:p%40ss%20w0rd@db/app", "postgres://app:***@db/app"),
        ("postgresql://app@db/app?password=qs-secret&sslmode=require",
         "postgresql://app@db/app?password=***&sslmode=require"),
        ("postgresql://app@db/app", "postgresql://app@db/app"),
        ("postgresql://db:5432/app?user=app&password=qs-secret",
         "postgresql://db:5432/app?user=app&password=***"),
        ("POSTGRES://db/app?sslpassword=k&x=1", "POSTGRES://db/app?sslpassword=***&x=1"),
        ("host=db user=app", "host=db user=app"),
    ],
)  # fmt: skip
def test_mask_dsn_masks_every_password_form(dsn: str, shown: str) -> None:
    """Keyword (plain, quoted, spaced) and URL (userinfo, percent-encoded, query) passwords
    are shown as ***, and nothing else of the DSN changes."""
    assert mask_dsn(dsn) == shown


def test_scrub_dsn_masks_raw_decoded_and_word_forms() -> None:
    """An error text is scrubbed of the password as written, percent-decoded, and of each
    word of a password with spaces."""
    dsn = "postgresql://app:p%40ss%20w0rd@db/app"
    assert set(dsn_passwords(dsn)) >= {"p%40ss%20w0rd", "p@ss w0rd", "w0rd"}
    text = 'failed: "p@ss w0rd" / p%40ss%20w0rd / near "w0rd"'
    assert scrub_dsn(text, dsn) == 'failed: "***" / *** / near "***"'


def test_a_short_password_is_scrubbed_only_as_a_whole_word() -> None:
    """A password of 3 characters is masked where it stands alone, not inside words."""
    assert scrub_dsn("pw abc failed for abcd", "host=h password=abc") == "pw *** failed for abcd"


def test_hide_quoted_hides_what_libpq_quotes() -> None:
    """libpq's parse errors quote the piece they stopped at: hide_quoted masks it."""
    assert hide_quoted('missing "=" after "with" in connection info string') == (
        'missing "***" after "***" in connection info string'
    )
