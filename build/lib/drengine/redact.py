"""The redactor: every secret resolved from the inventory is registered here, and every
journal line, report and terminal message passes through it before it is written."""

from __future__ import annotations

import threading
from typing import Any

MASK = "***"


class Redactor:
    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, secret: str) -> None:
        # Very short secrets would mask ordinary words everywhere; they are still never printed
        # by drengine itself, because statements carry secrets as parameters, not text.
        if len(secret) >= 3:
            with self._lock:
                self._secrets.add(secret)

    def text(self, value: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in value:
                value = value.replace(secret, MASK)
        return value

    def deep(self, value: Any) -> Any:
        """Redact strings inside JSON-like structures."""
        if not self._secrets:
            return value  # nothing to mask (callers hand over structures they own)
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.deep(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.deep(v) for v in value]
        return value


REDACTOR = Redactor()
