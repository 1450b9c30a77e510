"""Command validation and answers, including random payloads (hypothesis)."""

from __future__ import annotations

import json
from typing import Any, Dict, List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.errors import EdgeError
from edge.publish.commands import CommandProcessor, encode_answer, parse


def answer(payload: Any, handler: Any = None) -> Dict[str, Any]:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    body = CommandProcessor("dev", handler).answer(raw)
    return json.loads(encode_answer(body))  # the answer must always be valid JSON


@pytest.mark.parametrize(
    "cmd, expected",
    [
        ({"command": "set_threshold", "value": 0.5}, {"command": "set_threshold", "value": 0.5, "camera": None}),
        ({"command": "set_threshold", "value": 1, "camera": "door"},
         {"command": "set_threshold", "value": 1.0, "camera": "door"}),
        ({"command": "enable_camera", "camera": "door"}, {"command": "enable_camera", "camera": "door"}),
        ({"command": "disable_camera", "camera": "door", "id": 7}, {"command": "disable_camera", "camera": "door"}),
        ({"command": "snapshot", "camera": "door"}, {"command": "snapshot", "camera": "door"}),
        ({"command": "reload", "id": "abc"}, {"command": "reload"}),
    ],
)
def test_valid_commands_reach_the_handler_validated(cmd: Dict[str, Any], expected: Dict[str, Any]) -> None:
    seen: List[Dict[str, Any]] = []

    def handler(c: Dict[str, Any]) -> Dict[str, Any]:
        seen.append(c)
        return {"done": True}

    body = answer(cmd, handler)
    assert seen == [expected]
    assert body["ok"] is True and body["done"] is True
    assert body["id"] == cmd.get("id") and body["command"] == cmd["command"]
    assert body["v"] == 1 and body["device"] == "dev"


@pytest.mark.parametrize(
    "payload, error",
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"{nope", "not valid JSON"),
        (b"[" * 60000, "not valid JSON"),  # deeper than Python's recursion limit
        (b"[1, 2]", "JSON object, not an array"),
        (b'"reload"', "JSON object, not a string"),
        ({"id": 1}, "no 'command' field"),
        ({"command": "format_disk"}, "unknown command 'format_disk'"),
        ({"command": 3}, "unknown command"),
        ({"command": "set_threshold"}, "value: Field required"),
        ({"command": "set_threshold", "value": 1.5}, "value: Input should be less than or equal to 1"),
        ({"command": "set_threshold", "value": "0.5"}, "value: Input should be a valid number"),
        ({"command": "set_threshold", "value": True}, "value: Input should be a valid number"),
        (b'{"command": "set_threshold", "value": NaN}', "finite number"),
        ({"command": "enable_camera"}, "camera: Field required"),
        ({"command": "enable_camera", "camera": "../etc"}, "camera: String should match pattern"),
        ({"command": "reload", "force": True}, "force: unknown field"),
        ({"command": "reload", "id": [1]}, "id"),
        (b"x" * 70000, "too large"),
    ],
)
def test_bad_commands_are_answered_with_a_clear_error(payload: Any, error: str) -> None:
    called = []
    body = answer(payload, lambda c: called.append(c) or {})
    assert body["ok"] is False
    assert error in body["error"], body
    assert body.get("hint")
    assert called == []


def test_the_id_is_echoed_even_when_the_command_is_invalid() -> None:
    body = answer({"command": "set_threshold", "value": 7, "id": "req-1"})
    assert body["ok"] is False and body["id"] == "req-1" and body["command"] == "set_threshold"


def test_ping_is_answered_without_the_daemon() -> None:
    body = answer({"command": "ping", "id": 1})
    assert body["ok"] is True and body["pong"] is True and body["id"] == 1 and body["command"] == "ping"


def test_without_a_handler_commands_are_refused() -> None:
    body = answer({"command": "reload"})
    assert body["ok"] is False and "does not take commands" in body["error"]


def test_handler_errors_become_answers() -> None:
    def refuse(c: Dict[str, Any]) -> Dict[str, Any]:
        raise EdgeError("unknown camera 'x'", "cameras: door")

    body = answer({"command": "snapshot", "camera": "x"}, refuse)
    assert body == {**body, "ok": False, "error": "unknown camera 'x'", "hint": "cameras: door"}

    def crash(c: Dict[str, Any]) -> Dict[str, Any]:
        raise KeyError("bug")

    body = answer({"command": "reload"}, crash)
    assert body["ok"] is False and "internal error" in body["error"]


def test_a_handler_answer_json_cannot_carry_is_still_sent() -> None:
    body = answer({"command": "reload"}, lambda c: {"value": float("nan"), "path": object()})
    assert body["ok"] is True and body["value"] is None and isinstance(body["path"], str)


def test_parse_returns_the_model() -> None:
    cmd, head = parse(b'{"command": "snapshot", "camera": "door", "id": "q"}')
    assert cmd is not None and head == {"id": "q", "command": "snapshot"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
commandish = st.fixed_dictionaries(
    {"command": st.sampled_from(["set_threshold", "enable_camera", "disable_camera", "snapshot", "reload",
                                 "ping", "nope"])},
    optional={"value": json_values, "camera": json_values, "id": json_values, "extra": json_values},
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode()),
                 commandish.map(lambda v: json.dumps(v).encode())))
def test_fuzz_every_payload_gets_one_answer_and_only_valid_commands_run(payload: bytes) -> None:
    seen: List[Dict[str, Any]] = []

    def handler(c: Dict[str, Any]) -> Dict[str, Any]:
        seen.append(c)
        return {}

    body = answer(payload, handler)
    assert isinstance(body["ok"], bool)
    if body["ok"]:
        assert body["command"] == "ping" or len(seen) == 1
    else:
        assert seen == [] and body["error"]
    for c in seen:
        assert c["command"] in {"set_threshold", "enable_camera", "disable_camera", "snapshot", "reload"}
        if c["command"] == "set_threshold":
            assert 0 <= c["value"] <= 1
