"""The Azure client's error edges: Retry-After values and secret redaction."""

from __future__ import annotations

import email.utils
import time

import pytest

from detectkit.backends.azure.errors import MAX_RETRY_DELAY, redact, retry_delay


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", 7.0),
        (" 3 ", 3.0),
        ("-5", 0.0),
        ("1e9", MAX_RETRY_DELAY),
        ("inf", MAX_RETRY_DELAY),
        ("nan", 4.0),
        ("soon", 4.0),
        ("", 4.0),
        ("Thu, 99 Foo 2026 00:00:00 GMT", 4.0),
        ("Mon, 01 Jan 1990 00:00:00 GMT", 0.0),  # a date in the past: no wait
    ],
)
def test_retry_delay(value: str, expected: float) -> None:
    assert retry_delay({"Retry-After": value}, 2) == expected


def test_retry_delay_reads_an_http_date() -> None:
    soon = email.utils.formatdate(time.time() + 5, usegmt=True)
    assert 3.0 <= retry_delay({"retry-after": soon}, 0) <= 5.0


@pytest.mark.parametrize(
    "echo",
    [
        "key=ab/cd+ef==",
        '{"key": "ab\\/cd+ef=="}',
        "Authorization: Bearer eyJ0eXAi.eyJhdWQi.sig-_",
        "authorization: bearer abc.def.ghi",
    ],
)
def test_redact_removes_every_spelling(echo: str) -> None:
    text = redact(echo, "ab/cd+ef==")
    assert "ab/cd" not in text and "ab\\/cd" not in text and "eyJ" not in text
    assert "abc.def" not in text
    assert "**********" in text
