"""Operator login: salted password hashes from the standard library, and signed sessions.

A hash is ``scrypt$N$r$p$salt$key`` or ``pbkdf2_sha256$iterations$salt$key`` (salt and key in
url-safe base64). ``login`` checks a password against ``dashboard.users`` and issues an
``Operator`` signed with a key that lives only in this process; every control helper calls
``require(operator)``, so a control action fails without a login even if a page forgot to
hide its button, and an ``Operator`` cannot be made up without the password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from foresight.errors import ForesightError

_KEY = secrets.token_bytes(32)  # signs sessions of this process only
_SCRYPT = (2**14, 8, 1)
_PBKDF2_MIN = 100_000


class LoginRequired(ForesightError):
    """A control action was attempted without a valid operator login."""


@dataclass(frozen=True)
class Operator:
    """A logged-in operator (issued only by ``login``)."""

    name: str
    token: str


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def hash_password(password: str, method: str = "scrypt") -> str:
    """A salted hash of ``password`` for ``dashboard.users``.

    >>> verify_password("s3cret", hash_password("s3cret", "pbkdf2_sha256"))
    True
    """
    if not password:
        raise ValueError("empty password")
    salt = secrets.token_bytes(16)
    if method == "scrypt":
        n, r, p = _SCRYPT
        key = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
        return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(key)}"
    if method == "pbkdf2_sha256":
        it = 600_000
        key = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, it)
        return f"pbkdf2_sha256${it}${_b64(salt)}${_b64(key)}"
    raise ValueError(f"unknown hash method {method!r} (scrypt or pbkdf2_sha256)")


def check_hash(stored: str) -> str | None:
    """What is wrong with a stored hash, or None when it is well formed."""
    parts = stored.split("$")
    try:
        if parts[0] == "scrypt" and len(parts) == 6:
            n, r, p = (int(x) for x in parts[1:4])
            if n < 2**10 or n & (n - 1) or r < 1 or p < 1:
                return "scrypt parameters too weak or invalid"
            _unb64(parts[4]), _unb64(parts[5])
            return None
        if parts[0] == "pbkdf2_sha256" and len(parts) == 4:
            if int(parts[1]) < _PBKDF2_MIN:
                return f"pbkdf2 needs at least {_PBKDF2_MIN} iterations"
            _unb64(parts[2]), _unb64(parts[3])
            return None
    except ValueError:
        return "malformed password hash"
    return "not a password hash (make one with `foresight dashboard --hash-password`)"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (constant-time comparison)."""
    if check_hash(stored) is not None:
        return False
    parts = stored.split("$")
    if parts[0] == "scrypt":
        n, r, p = (int(x) for x in parts[1:4])
        salt, want = _unb64(parts[4]), _unb64(parts[5])
        got = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=len(want))
    else:
        salt, want = _unb64(parts[2]), _unb64(parts[3])
        got = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, int(parts[1]), len(want))
    return hmac.compare_digest(got, want)


def _sign(name: str) -> str:
    return hmac.new(_KEY, name.encode(), hashlib.sha256).hexdigest()


def login(users: Mapping[str, str], name: str, password: str) -> Operator | None:
    """An ``Operator`` when ``name`` is a configured user and the password matches."""
    stored = users.get(name)
    if stored is None or not password or not verify_password(password, stored):
        return None
    return Operator(name, _sign(name))


def require(operator: Operator | None) -> Operator:
    """``operator`` if it came from ``login``; else raise ``LoginRequired``."""
    if not isinstance(operator, Operator) or not hmac.compare_digest(
        operator.token, _sign(operator.name)
    ):
        raise LoginRequired("this action needs an operator login")
    return operator
