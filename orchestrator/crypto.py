"""Encrypts secret inputs at rest with a key derived from ORCH_SECRET_KEY."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from orchestrator.errors import OrchestratorError


class SecretBox:
    def __init__(self, secret_key: str) -> None:
        digest = hashlib.sha256(b"orchestrator-secret-inputs:" + secret_key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def seal(self, values: dict[str, Any]) -> str | None:
        return self._fernet.encrypt(json.dumps(values).encode()).decode() if values else None

    def open(self, token: str | None) -> dict[str, Any]:
        if not token:
            return {}
        try:
            return json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken as exc:
            raise OrchestratorError("Secret inputs cannot be decrypted: ORCH_SECRET_KEY has changed.") from exc
