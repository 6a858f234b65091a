"""One place that takes secrets out of text shown to anyone: error lines, logs, the summary,
/stats.json and the live page.

Camera URLs carry credentials (`rtsp://user:password@host/...`) and query secrets
(`?token=...`, `&api_key=...`). Every URL in a text keeps its scheme, host, port and path, and
loses its user information and the values of query keys that name a secret. The source itself is
still opened with the full URL: only what is shown is redacted.
"""

from __future__ import annotations

import re

MASK = "***"
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]*[^\s'\"<>:.,;)]")  # not a sentence's own colon or stop
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")
_SECRET_KEY = re.compile(r"(?i)(token|key|pass|pwd|secret|auth|sig|credential|session|jwt|cookie|code)")
_QUERY_PAIR = re.compile(r"([?&;])([^=&;#]+)=([^&;#]*)")


def _redact_url(url: str) -> str:
    url = _USERINFO.sub(lambda m: m.group(1) + MASK + "@", url)

    def pair(m: re.Match) -> str:
        key = m.group(2)
        return f"{m.group(1)}{key}={MASK}" if _SECRET_KEY.search(key) else m.group(0)

    return _QUERY_PAIR.sub(pair, url)


def redact(text: object) -> str:
    """`text` (anything; str() of it) with the credentials of every URL in it masked."""
    return _URL.sub(lambda m: _redact_url(m.group(0)), str(text))
