"""Remote commands: a strict JSON schema, and one answer for every message.

A command is a JSON object with ``command`` naming it, an optional ``id`` echoed in the
answer, and the command's own fields (``docs/mqtt.md`` lists them). Anything else —
not UTF-8, not JSON, not an object, an unknown command, a missing or extra field, a
value out of range — is answered with ``ok: false`` and an error naming the problem.
Nothing in a command can reach the detection threads except through ``on_command``,
which gets only validated commands.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable, Dict, Optional, Tuple, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from typing_extensions import Annotated, Literal

from edge.config.model import NAME_RE
from edge.errors import EdgeError
from edge.publish.status import encode_json

log = logging.getLogger(__name__)

RESPONSE_VERSION = 1
MAX_COMMAND_BYTES = 65536

CommandHandler = Callable[[Dict[str, Any]], Dict[str, Any]]
CameraName = Annotated[str, Field(pattern=NAME_RE, description="A camera name from the config.")]
CommandId = Union[Annotated[str, Field(max_length=128)], int]


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
    id: Optional[CommandId] = Field(None, description="Echoed in the answer, to match it to the request.")


class SetThreshold(_Command):
    command: Literal["set_threshold"]
    value: float = Field(ge=0, le=1, description="New minimum score.")
    camera: Optional[CameraName] = Field(None, description="Only this camera (default: every camera).")


class EnableCamera(_Command):
    command: Literal["enable_camera"]
    camera: CameraName


class DisableCamera(_Command):
    command: Literal["disable_camera"]
    camera: CameraName


class Snapshot(_Command):
    command: Literal["snapshot"]
    camera: CameraName


class Reload(_Command):
    command: Literal["reload"]


class Ping(_Command):
    command: Literal["ping"]


Command = Annotated[
    Union[SetThreshold, EnableCamera, DisableCamera, Snapshot, Reload, Ping], Field(discriminator="command")
]
COMMANDS = ("set_threshold", "enable_camera", "disable_camera", "snapshot", "reload", "ping")
_ADAPTER: TypeAdapter[Any] = TypeAdapter(Command)


class CommandError(EdgeError):
    """A command that cannot be carried out as sent."""


def parse(payload: bytes) -> Tuple[Optional[BaseModel], Dict[str, Any]]:
    """(the validated command, or None with an error answer). The answer echoes ``id`` when it can."""
    if len(payload) > MAX_COMMAND_BYTES:
        return None, error_body(CommandError(f"command too large ({len(payload)} bytes)",
                                             f"at most {MAX_COMMAND_BYTES} bytes"))
    try:
        data = json.loads(payload.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        reason = "not UTF-8" if isinstance(exc, UnicodeDecodeError) else "not valid JSON"
        return None, error_body(CommandError(f"command is {reason}", 'send a JSON object like {"command": "ping"}'))
    if not isinstance(data, dict):
        return None, error_body(CommandError(f"a command must be a JSON object, not {_json_type(data)}",
                                             'send a JSON object like {"command": "ping"}'))
    head = {k: data[k] for k in ("id", "command") if _echoable(data.get(k))}
    try:
        return _ADAPTER.validate_python(data), head
    except ValidationError as exc:
        return None, {**head, **error_body(_explain(exc, data))}


def _echoable(v: Any) -> bool:
    return (isinstance(v, str) and len(v) <= 128) or (isinstance(v, int) and not isinstance(v, bool))


def _json_type(v: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(v), "a number")


def _explain(exc: ValidationError, data: Dict[str, Any]) -> CommandError:
    known = ", ".join(COMMANDS)
    errors = exc.errors(include_url=False)
    first = errors[0]
    if first["type"] == "union_tag_not_found":
        return CommandError("the command has no 'command' field", f"one of: {known}")
    if first["type"] == "union_tag_invalid":
        return CommandError(f"unknown command {str(data.get('command'))[:64]!r}", f"one of: {known}")
    parts = []
    for e in errors[:3]:
        loc = ".".join(str(p) for p in e["loc"][1:]) or "command"
        msg = "unknown field" if e["type"] == "extra_forbidden" else e["msg"]
        parts.append(f"{loc}: {msg}")
    more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
    return CommandError(f"invalid {data.get('command')} command: {'; '.join(parts)}{more}",
                        "see the command reference in docs/mqtt.md")


def error_body(exc: EdgeError) -> Dict[str, Any]:
    body: Dict[str, Any] = {"ok": False, "error": exc.message}
    if exc.hint:
        body["hint"] = exc.hint
    return body


class CommandProcessor:
    """Turns a command message into its answer; never raises."""

    def __init__(self, device: str, on_command: Optional[CommandHandler]) -> None:
        self.device = device
        self.on_command = on_command
        self.handled = 0
        self.failed = 0
        self._lock = threading.Lock()  # answer() and refuse() run on different threads

    def _count(self, ok: bool) -> None:
        with self._lock:
            self.handled += 1
            self.failed += int(not ok)

    def answer(self, payload: bytes) -> Dict[str, Any]:
        cmd, head = parse(payload)
        body = head if cmd is None else {**head, **self._run(cmd)}
        self._count(bool(body.get("ok")))
        if not body.get("ok"):
            log.info("command refused: %s", body.get("error"))
        return {"v": RESPONSE_VERSION, "device": self.device, "ts": round(time.time(), 3),
                "id": head.get("id"), "command": head.get("command"), **body}

    def refuse(self, payload: bytes, message: str, hint: str) -> Dict[str, Any]:
        """The answer to a command that is not run (busy, retained): names the reason."""
        _, head = parse(payload)
        self._count(False)
        return {"v": RESPONSE_VERSION, "device": self.device, "ts": round(time.time(), 3),
                "id": head.get("id"), "command": head.get("command"), **error_body(CommandError(message, hint))}

    def _run(self, cmd: BaseModel) -> Dict[str, Any]:
        name = getattr(cmd, "command", "")
        if name == "ping":
            return {"ok": True, "pong": True}
        if self.on_command is None:
            return error_body(CommandError("this process does not take commands", "send them to the daemon"))
        args = cmd.model_dump(exclude={"id"})
        try:
            result = self.on_command(args)
        except EdgeError as exc:
            return error_body(exc)
        except Exception:
            log.exception("command %s failed", name)
            return error_body(CommandError(f"internal error while running {name}", "see the daemon's log"))
        if not isinstance(result, dict):
            result = {"result": result}
        return {"ok": True, **result}


def encode_answer(body: Dict[str, Any]) -> bytes:
    """JSON of an answer; values JSON cannot carry become strings or null."""
    return encode_json(body)
