"""Configuration building blocks: the strict base model, names, paths and secret references."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_core import PydanticCustomError

NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True, validate_assignment=True)


def _located(reason: str, *loc: Union[str, int]) -> PydanticCustomError:
    """An error reported at ``loc`` below the field or model being validated (see edge.config.messages)."""
    return PydanticCustomError("located", "{reason}", {"reason": reason, "loc": tuple(loc)})


def _must_exist(path: Path) -> Path:
    if not path.expanduser().exists():
        raise ValueError(f"file not found: {path}")
    return path.expanduser()


# --------------------------------------------------------------------------- secrets
class SecretRef(Strict):
    """Where a secret comes from: exactly one of ``env``, ``file`` or ``credential``."""

    env: Optional[str] = Field(None, description="Name of an environment variable holding the secret.")
    file: Optional[Path] = Field(None, description="File whose content (stripped) is the secret.")
    credential: Optional[str] = Field(
        None,
        description="Name of a systemd credential (LoadCredential=) read from $CREDENTIALS_DIRECTORY.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        given = [k for k in ("env", "file", "credential") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of env, file or credential")
        return self


Secret = Union[SecretRef, SecretStr]
