"""Safe on a dealer's network (docs/desk.md, "Security").

* Bound to loopback, the desk serves whoever is on the machine. Bound to any other address
  it requires a login: one desk password, stored only as a salted scrypt hash
  (:func:`hash_password`, ``cbs-agent desk --hash-password``), a signed session cookie
  (Starlette's SessionMiddleware, HttpOnly, SameSite=Strict) and a login limit
  (:class:`LoginLimiter`: five failures per address per minute, then 429).
* Every form carries a CSRF token bound to the session (:func:`csrf_token`,
  :func:`csrf_ok`); a POST without the right one is refused with 403.
* Every response carries security headers (:data:`SECURITY_HEADERS`): a Content Security
  Policy without inline script or style, no framing, no sniffing, no referrer.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from collections import deque
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

from agent.errors import ConfigError

__all__ = ["SECURITY_HEADERS", "LoginLimiter", "csrf_ok", "csrf_token", "hash_password",
           "is_loopback", "load_secret", "verify_password"]

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self'; "
                                "img-src 'self' data:; connect-src 'self'; object-src 'none'; "
                                "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$salt$hash`` (hex), for ``[desk] password_hash``."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P,
                            dklen=32)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${digest.hex()}"


def check_hash(stored: str) -> str:
    """``stored`` if it is a hash :func:`hash_password` made, else ConfigError."""
    parts = stored.split("$")
    try:
        ok = (len(parts) == 6 and parts[0] == "scrypt" and all(int(p) > 0 for p in parts[1:4])
              and len(bytes.fromhex(parts[4])) >= 8 and len(bytes.fromhex(parts[5])) == 32)
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError("desk.password_hash is not a password hash; make one with "
                          "`cbs-agent desk --hash-password`")
    return stored


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of ``password`` against a :func:`hash_password` value."""
    try:
        _, n, r, p, salt, digest = stored.split("$")
        actual = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r),
                                p=int(p), dklen=32)
    except ValueError:
        return False
    return hmac.compare_digest(actual.hex(), digest)


def load_secret(path: Path) -> str:
    """The session-signing key kept in ``path`` (made on first use, readable by the owner
    only), so that sign-ins survive a restart. Raises ConfigError if it cannot be kept."""
    try:
        if path.exists():
            secret = path.read_text(encoding="ascii").strip()
            if len(secret) >= 32:
                return secret
        secret = secrets.token_hex(32)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
        path.write_text(secret + "\n", encoding="ascii")
        return secret
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot keep the desk's session key: {exc}") from exc


def csrf_token(session: MutableMapping[str, Any]) -> str:
    """The session's CSRF token (made on first use)."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(24)
        session["csrf"] = token
    return token


def csrf_ok(session: MutableMapping[str, Any], submitted: str | None) -> bool:
    token = session.get("csrf")
    return (isinstance(token, str) and isinstance(submitted, str)
            and hmac.compare_digest(token, submitted))


class LoginLimiter:
    """At most ``attempts`` failed logins per client address within ``window_s``."""

    def __init__(self, attempts: int = 5, window_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str) -> deque[float]:
        now = self._clock()
        failures = self._failures.setdefault(client, deque())
        while failures and now - failures[0] > self.window_s:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return deque()
        return failures

    def allowed(self, client: str) -> bool:
        return len(self._recent(client)) < self.attempts

    def failed(self, client: str) -> None:
        self._recent(client)
        self._failures.setdefault(client, deque()).append(self._clock())
        if len(self._failures) > 10_000:  # bounded: forget the quietest
            self._failures.pop(next(iter(self._failures)))
