"""Delivery channels: SMTP e-mail, a generic HMAC-signed JSON webhook, and WeCom/DingTalk/Feishu robots.

Notifications go to the operator's own mail server and webhook endpoints (configured, not probed
targets), so they do not pass through the probe scope; each call has a timeout.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any
from urllib.parse import quote_plus

from sentinel import __version__
from sentinel.notify.settings import SmtpSettings, WebhookSettings
from sentinel.redact import redact_url


class DeliveryError(Exception):
    """A channel refused or failed; the message stays due and is retried later."""


def send_mail(smtp: SmtpSettings, to: str, subject: str, body: str) -> None:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = smtp.sender, to, subject
    msg["Date"], msg["Message-ID"] = formatdate(localtime=False), make_msgid(domain="sentinel")
    msg.set_content(body, charset="utf-8")
    context = ssl.create_default_context(cafile=smtp.ca_file) if smtp.ca_file else ssl.create_default_context()
    try:
        client: smtplib.SMTP
        if smtp.ssl:
            client = smtplib.SMTP_SSL(smtp.host, smtp.port, timeout=smtp.timeout, context=context)
        else:
            client = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout)
        with client:
            if smtp.starttls and not smtp.ssl:
                client.starttls(context=context)
            if smtp.username and smtp.password:
                client.login(smtp.username, smtp.password.get_secret_value())
            client.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryError(f"SMTP {smtp.host}:{smtp.port}: {exc}") from None


def sign_generic(secret: str, body: bytes, timestamp: str) -> str:
    """`X-Sentinel-Signature: sha256=HEX` over `timestamp.body` (replay-resistant with the timestamp header)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def _dingtalk_url(url: str, secret: str, ts_ms: int) -> str:
    # DingTalk robot signing: base64(HMAC-SHA256(secret, f"{timestamp}\n{secret}")), URL-encoded.
    mac = hmac.new(secret.encode(), f"{ts_ms}\n{secret}".encode(), hashlib.sha256).digest()
    sign = quote_plus(base64.b64encode(mac).decode())
    return f"{url}{'&' if '?' in url else '?'}timestamp={ts_ms}&sign={sign}"


def _feishu_sign(secret: str, ts: int) -> str:
    # Feishu robot signing: base64(HMAC-SHA256(key=f"{timestamp}\n{secret}", msg=b"")).
    return base64.b64encode(hmac.new(f"{ts}\n{secret}".encode(), b"", hashlib.sha256).digest()).decode()


def webhook_request(hook: WebhookSettings, body: dict[str, Any]) -> urllib.request.Request:
    """The POST for one message: `body` is already in the hook's format (see `notify.robots`); this adds
    the signature each platform asks for."""
    secret = hook.secret.get_secret_value() if hook.secret else None
    url = hook.url
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": f"sentinel/{__version__}"}
    if secret and hook.format == "dingtalk":
        url = _dingtalk_url(url, secret, int(time.time() * 1000))
    elif secret and hook.format == "feishu":
        now = int(time.time())
        body = {**body, "timestamp": str(now), "sign": _feishu_sign(secret, now)}
    data = json.dumps(body, ensure_ascii=False).encode()
    if hook.format == "generic" and secret:
        stamp = str(int(time.time()))
        headers |= {"X-Sentinel-Timestamp": stamp, "X-Sentinel-Signature": sign_generic(secret, data, stamp)}
    return urllib.request.Request(url, data=data, headers=headers, method="POST")


def post_webhook(hook: WebhookSettings, body: dict[str, Any]) -> None:
    request = webhook_request(hook, body)
    try:
        with urllib.request.urlopen(request, timeout=hook.timeout) as resp:
            answer = resp.read(65536)
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"webhook {redact(hook.url)}: HTTP {exc.code}") from None
    except (OSError, urllib.error.URLError) as exc:
        raise DeliveryError(f"webhook {redact(hook.url)}: {exc}") from None
    # Robots answer 200 with an error code in the body when they reject a message.
    if hook.format in ("wecom", "dingtalk", "feishu"):
        try:
            result = json.loads(answer or b"{}")
        except json.JSONDecodeError:
            return
        code = result.get("errcode", result.get("code", result.get("StatusCode", 0)))
        if code not in (0, None):
            raise DeliveryError(f"webhook {redact(hook.url)}: robot refused the message: {str(result)[:200]}")


def redact(url: str) -> str:
    """Robot URLs carry their key in the query or the path: never log it."""
    return redact_url(url)
