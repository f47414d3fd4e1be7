"""What an API key looks like: `enr_` and 43 base62 characters (256 random bits).

The service keeps only `key_hash(key)`. A key is random enough that a fast hash is as
safe as a slow one (as GitHub's and Stripe's tokens are kept), and the lookup on every
request stays a dictionary hit.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string

KEY_PREFIX = "enr_"
_ALPHABET = string.ascii_letters + string.digits
_RANDOM_CHARS = 43  # 43 * log2(62) = 256 bits
PREFIX_LENGTH = 12  # what a list shows: "enr_" and 8 characters
_KEY_SHAPE = re.compile(rb"enr_[A-Za-z0-9]{32,200}")


def mint_key() -> str:
    """A new key, from the operating system's randomness."""
    return KEY_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_CHARS))


def key_hash(key: bytes) -> bytes:
    """The SHA-256 digest the database keeps instead of the key."""
    return hashlib.sha256(key).digest()


def looks_like_key(token: bytes) -> bool:
    """The shape of a key this service mints (checked before asking the database)."""
    return _KEY_SHAPE.fullmatch(token) is not None


def prefix_of(key: str) -> str:
    return key[:PREFIX_LENGTH]
