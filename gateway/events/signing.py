"""Standard Webhooks headers (https://www.standardwebhooks.com/) for one delivery attempt,
made with the `standardwebhooks` package, the one subscribers verify with.

`webhook-id` is the event's id, the same on every attempt and every redelivery, so a
subscriber drops duplicates by it; `webhook-timestamp` is the attempt's time (receivers
refuse one more than five minutes off); `webhook-signature` is `v1,<base64 HMAC-SHA256>`
of `id.timestamp.body` under the subscription's secret.
"""

from __future__ import annotations

from datetime import datetime
from math import floor

from standardwebhooks.webhooks import Webhook

__all__ = ["signed_headers"]


def signed_headers(secret: str, webhook_id: str, body: bytes, at: datetime) -> dict[str, str]:
    """The headers of a delivery of `body` signed with `secret` at `at`.

    Example:
        >>> signed_headers(secret, "e1", b"{}", now)["webhook-id"]
        'e1'
    """
    signature = Webhook(secret).sign(webhook_id, at, body.decode())
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(floor(at.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }
