"""Resolve secret references when they are needed, never during validation."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from pydantic import SecretStr

from edge.config.model import Secret, SecretRef
from edge.errors import ConfigError


def reveal(secret: Optional[Secret], what: str = "secret") -> Optional[str]:
    """The secret's value, or None when not configured. Raises ConfigError naming the fix."""
    if secret is None:
        return None
    if isinstance(secret, SecretStr):
        return secret.get_secret_value()
    if not isinstance(secret, SecretRef):
        raise TypeError(f"{what}: expected a SecretStr or SecretRef, got {type(secret).__name__}")
    if secret.env:
        value = os.environ.get(secret.env)
        if value is None:
            raise ConfigError(f"{what}: environment variable {secret.env} is not set", "export it or use file:")
        return value
    if secret.credential:
        creds = os.environ.get("CREDENTIALS_DIRECTORY")
        if not creds:
            raise ConfigError(
                f"{what}: credential {secret.credential!r} asked for but $CREDENTIALS_DIRECTORY is unset",
                "run under systemd with LoadCredential= or use env:/file:",
            )
        path = Path(creds) / secret.credential
    elif secret.file is not None:
        path = secret.file.expanduser()
    else:  # SecretRef validates exactly one source; a model_construct()ed one may have none
        raise ConfigError(f"{what}: no env, file or credential given", "give exactly one of them")
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path}: {exc.strerror}", "check the path and permissions") from None
