"""Change notices as tests read them."""

from __future__ import annotations

from datetime import timedelta

DELAY = timedelta(minutes=10)


UID = "2023-03-01.irev-elus-2023@irev.fr"
