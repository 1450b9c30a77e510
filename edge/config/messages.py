"""Turn pydantic's validation errors into one short, located line per problem.

pydantic reports a value that fits no member of a union once per member, with the
member's internal schema name in the location (``password.lax-or-strict[...]``). Here
those names are dropped, the members the value clearly was not meant for are dropped,
and when the value fits no member at all the problem is said once ("must be a string
or a mapping with one of env, file, credential").

Validators in :mod:`edge.config.model` may point deeper than the field they check by
raising ``PydanticCustomError`` with ``"loc"`` (a tuple of keys/indices) in its context.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from pydantic import BaseModel

from edge.config import model as schema

Loc = Tuple[Union[str, int], ...]

# A union member rejected the value's type itself (rather than something inside it).
_TYPE_ERRORS = {
    "literal_error": None,
    "string_type": "a string",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a mapping",
    "path_type": "a path",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "model_type": None,
    "model_attributes_type": None,
    "is_instance_of": None,
}

_FRIENDLY = {
    "string_pattern_mismatch": {
        schema.NAME_RE: "must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit",
    },
}


def _walk(loc: Loc, data: Any, missing: bool) -> Tuple[Loc, Optional[int], str]:
    """Loc without pydantic's schema names, where in it a union member was named, and that name."""
    out: List[Union[str, int]] = []
    branch: Optional[int] = None
    member = ""
    node = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(part, str) and not (isinstance(node, dict) and part in node) and not (last and missing):
            if isinstance(node, dict) and node.get("kind") == part:
                continue  # the tag of a discriminated union (source.rtsp.url): one member only
            if branch is None:
                branch, member = len(out), part
            continue
        out.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(out), branch, member


def _expected(err: Any) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "literal_error":
        return str(ctx.get("expected", "a listed value"))
    if kind in ("model_type", "model_attributes_type"):
        cls = getattr(schema, str(ctx.get("class_name", "")), None)
        if isinstance(cls, type) and issubclass(cls, BaseModel):
            return f"a mapping with one of: {', '.join(cls.model_fields)}"
        return "a mapping"
    if kind == "is_instance_of":
        return str(ctx.get("class", "another type"))
    return _TYPE_ERRORS.get(kind) or kind


def ctx_of(err: Any) -> Dict[str, Any]:
    ctx = err.get("ctx")
    return ctx if isinstance(ctx, dict) else {}


def message(err: Any) -> str:
    """The message of one error, in the config's words."""
    kind = err.get("type", "")
    msg = str(err.get("msg", "invalid"))
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see config/edge.example.yaml)"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        return f"unknown {ctx.get('tag')!r}; use one of {ctx.get('expected_tags')}"
    if kind == "union_tag_not_found":
        return "required key is missing (file, test, rtsp, v4l2, csi or pipeline)"
    friendly = _FRIENDLY.get(kind, {}).get(str(ctx.get("pattern", "")))
    if friendly:
        return friendly
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return msg


def _either(options: List[str]) -> str:
    """'a, b or c'; options that contain commas themselves go last, after ', or'."""
    options = sorted(options, key=lambda o: "," in o)
    if len(options) == 1:
        return options[0]
    sep = ", or " if "," in options[-1] else " or "
    return ", ".join(options[:-1]) + sep + options[-1]


def explain(errors: Sequence[Any], data: Any) -> List[Tuple[Loc, str]]:
    """(location, message) for every problem, in pydantic's order, unions said once."""
    plain: List[Tuple[Loc, Dict[str, Any]]] = []
    unions: Dict[Loc, List[Tuple[str, bool, Loc, Dict[str, Any]]]] = {}
    order: List[Tuple[str, Loc]] = []
    for err in errors:
        raw = tuple(err["loc"])
        loc, branch, member = _walk(raw, data, err.get("type") == "missing")
        extra = ctx_of(err).get("loc")
        if isinstance(extra, tuple):
            loc = loc + extra
        if err.get("type") in ("union_tag_invalid", "union_tag_not_found"):
            loc = (*loc, str(ctx_of(err).get("discriminator", "kind")).strip("'"))
        if branch is None:
            plain.append((loc, err))
            order.append(("plain", loc))
            continue
        at = loc[:branch]
        # A type mismatch right at the union: this member was not what the user meant.
        wrong_type = loc == at and err["type"] in _TYPE_ERRORS
        if at not in unions:
            unions[at] = []
            order.append(("union", at))
        unions[at].append((member, wrong_type, loc, err))
    out: List[Tuple[Loc, str]] = []
    seen = set()
    plain_iter = iter(plain)
    for kind, at in order:
        if kind == "plain":
            loc, err = next(plain_iter)
            line = (loc, message(err))
            if line not in seen:
                seen.add(line)
                out.append(line)
            continue
        members = unions[at]
        meant = {m for m, wrong, _, _ in members if not wrong}
        if meant:
            lines = [(loc, message(err)) for m, _, loc, err in members if m in meant]
        else:
            expected: List[str] = []
            for _, _, _, err in members:
                e = _expected(err)
                if e not in expected:
                    expected.append(e)
            lines = [(at, f"must be {_either(expected)}")]
        for line in lines:
            if line not in seen:
                seen.add(line)
                out.append(line)
    return out
