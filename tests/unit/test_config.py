"""Config loading: every bad config gives one located line; paths, descriptions, secrets."""

from __future__ import annotations

import textwrap
import typing
from pathlib import Path
from typing import Iterator, List, Set, Type

import pytest
from pydantic import BaseModel, SecretStr

from edge.config import model as schema
from edge.config.load import ConfigProblems, load_config, parse_config
from edge.config.model import Config, SecretRef
from edge.config.secrets import reveal
from edge.errors import EXIT_CONFIG, ConfigError, EdgeError

BASE = """\
device: box-1
cameras:
  - name: front
    source:
      kind: file
      path: video.avi
model:
  path: model.onnx
"""  # 8 lines: whatever a case appends starts at line 9


@pytest.fixture
def cfg_dir(tmp_path: Path) -> Path:
    """A directory with the files a config may point at (contents do not matter to the schema)."""
    for name in ("model.onnx", "video.avi", "cert.pem", "key.pem", "ca.pem", "labels.txt"):
        (tmp_path / name).write_text("x\n")
    return tmp_path


def write(cfg_dir: Path, text: str) -> Path:
    path = cfg_dir / "edge.yaml"
    path.write_text(text)
    return path


def problems(cfg_dir: Path, text: str) -> List[str]:
    path = write(cfg_dir, text)
    with pytest.raises(ConfigProblems) as err:
        load_config(path)
    assert isinstance(err.value, ConfigError) and err.value.exit_code == EXIT_CONFIG
    return str(err.value).splitlines()


def dedent(s: str) -> str:
    return textwrap.dedent(s).lstrip("\n")


# (id, config text, line, key path, message fragment)
BAD = [
    ("unknown-top-key", BASE + "colour: red\n", 9, "colour", "unknown key"),
    ("unknown-key-depth-2", BASE + "  labelz: coco\n", 9, "model.labelz", "unknown key"),
    ("unknown-key-depth-3", BASE + "mqtt:\n  tls:\n    cafile: ca.pem\n", 11, "mqtt.tls.cafile", "unknown key"),
    ("unknown-key-in-source", BASE.replace("path: video.avi\n", "path: video.avi\n      fps: 5\n"), 7,
     "cameras[0].source.fps", "unknown key"),
    ("unknown-key-in-list-item", BASE.replace("  - name: front\n", "  - name: front\n    nmae: x\n"), 4,
     "cameras[0].nmae", "unknown key"),
    ("wrong-kind-int", BASE + "mqtt:\n  port: abc\n", 10, "mqtt.port", "valid integer"),
    ("wrong-kind-list", BASE.replace("cameras:\n", "cameras: front\nx_cameras:\n", 1).split("x_cameras")[0]
     + "model:\n  path: model.onnx\n", 2, "cameras", "valid list"),
    ("wrong-kind-mapping", BASE + "mqtt: 5\n", 9, "mqtt", "valid dictionary"),
    ("missing-required-nested", BASE.replace("  path: model.onnx\n", "  name: nano\n"), 7, "model.path",
     "required key is missing"),
    ("missing-required-top", "device: box-1\nmodel:\n  path: model.onnx\n", 1, "cameras", "required key is missing"),
    ("out-of-range", BASE + "detect:\n  score_threshold: 1.5\n", 10, "detect.score_threshold",
     "less than or equal to 1"),
    ("out-of-range-port", BASE + "mqtt:\n  port: 70000\n", 10, "mqtt.port", "less than or equal to 65535"),
    ("bad-enum", BASE + "log_level: verbose\n", 9, "log_level", "'debug', 'info', 'warning' or 'error'"),
    ("bad-enum-nested", BASE + "  format: yolov99\n", 9, "model.format", "'auto', 'nanodet'"),
    ("model-not-found", BASE.replace("model.onnx", "missing.onnx"), 8, "model.path", "file not found"),
    ("video-not-found", BASE.replace("video.avi", "missing.avi"), 6, "cameras[0].source.path", "file not found"),
    ("labels-file-not-found", BASE + "  labels: nolabels.txt\n", 9, "model.labels", "file not found"),
    ("bad-rtsp-url", BASE.replace("kind: file\n      path: video.avi", "kind: rtsp\n      url: http://cam/live"), 6,
     "cameras[0].source.url", "must start with rtsp:// or rtsps://"),
    ("bad-topic-placeholder", BASE + "mqtt:\n  detections_topic: '{prefix}/{site}/{camera}'\n", 10,
     "mqtt.detections_topic", "unknown placeholder 'site'"),
    ("topic-wildcard", BASE + "mqtt:\n  detections_topic: '{prefix}/#'\n", 10, "mqtt.detections_topic",
     "must not contain + or #"),
    ("duplicate-camera-names", BASE.replace("model:", "  - name: front\n    source: {kind: test}\nmodel:"), 7,
     "cameras[1].name", "camera name 'front' is used twice"),
    ("unknown-class-label", BASE + "detect:\n  classes: [person, persn]\n", 10, "detect.classes[1]",
     "unknown class labels: persn"),
    ("unknown-camera-class", BASE.replace("  - name: front\n", "  - name: front\n    classes: [dgo]\n"), 4,
     "cameras[0].classes[0]", "unknown class labels: dgo"),
    ("unknown-threshold-label", BASE + "detect:\n  class_thresholds:\n    perzon: 0.5\n", 11,
     "detect.class_thresholds.perzon", "unknown class labels: perzon"),
    ("cert-without-key", BASE + "mqtt:\n  tls:\n    enabled: true\n    cert_file: cert.pem\n", 10,
     "mqtt.tls.key_file", "cert_file is set but key_file is missing"),
    ("key-without-cert", BASE + "mqtt:\n  tls:\n    key_file: key.pem\n", 10, "mqtt.tls.cert_file",
     "key_file is set but cert_file is missing"),
    ("ca-not-found", BASE + "mqtt:\n  tls:\n    ca_file: nope.pem\n", 11, "mqtt.tls.ca_file", "file not found"),
    ("std-zero", BASE + "  input:\n    std: [58.4, 0, 57.1]\n", 10, "model.input.std", "must not be 0"),
    ("mean-too-short", BASE + "  input:\n    mean: [1, 2]\n", 10, "model.input.mean", "at least 3 items"),
    ("bad-camera-name", BASE.replace("name: front", "name: front door"), 3, "cameras[0].name",
     "letters, digits, '_', '.' or '-'"),
    ("bad-device-name", BASE.replace("device: box-1", "device: -box"), 1, "device", "starting with a letter"),
    ("secret-zero-sources", BASE + "mqtt:\n  password: {}\n", 10, "mqtt.password",
     "give exactly one of env, file or credential"),
    ("secret-two-sources", BASE + "mqtt:\n  password:\n    env: MQTT_PW\n    file: pw.txt\n", 10, "mqtt.password",
     "give exactly one of env, file or credential"),
    ("secret-unknown-key", BASE + "mqtt:\n  password:\n    envv: MQTT_PW\n", 11, "mqtt.password.envv",
     "unknown key"),
    ("secret-wrong-type", BASE + "mqtt:\n  password: [a, b]\n", 10, "mqtt.password",
     "must be a string, or a mapping with one of: env, file, credential"),
    ("rtsp-secret-two-sources",
     BASE.replace("kind: file\n      path: video.avi",
                  "kind: rtsp\n      url: rtsp://cam/live\n      password: {env: A, credential: b}"),
     7, "cameras[0].source.password", "give exactly one of env, file or credential"),
    ("labels-wrong-type", BASE + "  labels: 5\n", 9, "model.labels", "must be 'coco', a list or a path"),
    ("labels-list-item", BASE + "  labels: [cat, 3]\n", 9, "model.labels[1]", "valid string"),
    ("bad-source-kind", BASE.replace("kind: file", "kind: webcam"), 5, "cameras[0].source.kind",
     "unknown 'webcam'; use one of 'file', 'test', 'rtsp'"),
    ("missing-source-kind", BASE.replace("      kind: file\n", ""), 4, "cameras[0].source.kind",
     "required key is missing (file, test, rtsp"),
    ("field-of-other-source-kind", BASE.replace("path: video.avi", "path: video.avi\n      url: rtsp://x"), 7,
     "cameras[0].source.url", "unknown key"),
    ("duplicate-yaml-key", BASE + "model:\n  path: model.onnx\n", 9, "model", "key given twice"),
    ("duplicate-sink", BASE + "sinks: [mqtt, mqtt]\n", 9, "sinks", "listed twice"),
    ("bad-version", BASE + "version: 2\n", 9, "version", "Input should be 1"),
    ("pipeline-with-appsink", BASE.replace("kind: file\n      path: video.avi",
                                           "kind: pipeline\n      description: videotestsrc ! appsink"), 6,
     "cameras[0].source.description", "leave out the appsink"),
    ("qos-enum", BASE + "mqtt:\n  qos: 3\n", 10, "mqtt.qos", "0, 1 or 2"),
]


@pytest.mark.parametrize("text, line, key, fragment", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_config_gives_one_located_line(cfg_dir: Path, text: str, line: int, key: str, fragment: str) -> None:
    lines = problems(cfg_dir, text)
    path = cfg_dir / "edge.yaml"
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{path}:{line}: {key}: "), lines[0]
    assert fragment in lines[0], lines[0]
    assert "lax-or-strict" not in lines[0] and "function-after" not in lines[0] and "Value error" not in lines[0]


def test_at_least_twenty_distinct_bad_configs() -> None:
    assert len({c[0] for c in BAD}) == len(BAD) >= 20


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "the file is empty"),
        ("# just a comment\n", "the file is empty"),
        ("- a\n- b\n", ":1: the top level must be a mapping of keys"),
        ("just a string\n", ":1: the top level must be a mapping of keys"),
        (BASE + "mqtt: [1, 2\n", ":10: not valid YAML: expected ',' or ']'"),
        (BASE + "mqtt:\n  port: 1\n   host: x\n", ":11: not valid YAML: mapping values are not allowed here"),
        (BASE + "\tbad: tab\n", ":9: not valid YAML: found character '\\t'"),
        (BASE + "x: !!python/object:os.system 1\n", ":9: not valid YAML: could not determine a constructor"),
    ],
    ids=["empty", "comment-only", "list", "scalar", "unclosed", "indent", "tab", "python-tag"],
)
def test_unreadable_yaml(cfg_dir: Path, text: str, expected: str) -> None:
    lines = problems(cfg_dir, text)
    assert len(lines) == 1
    assert lines[0].startswith(str(cfg_dir / "edge.yaml")) and expected in lines[0], lines[0]


def test_every_problem_is_listed_with_its_own_line(cfg_dir: Path) -> None:
    text = BASE.replace("video.avi", "missing.avi") + "log_level: loud\nmqtt:\n  port: 0\n  colour: red\n"
    lines = problems(cfg_dir, text)
    path = cfg_dir / "edge.yaml"
    assert lines == [
        f"{path}:6: cameras[0].source.path: file not found: {cfg_dir / 'missing.avi'}",
        f"{path}:9: log_level: Input should be 'debug', 'info', 'warning' or 'error'",
        f"{path}:11: mqtt.port: Input should be greater than or equal to 1",
        f"{path}:12: mqtt.colour: unknown key (check the spelling; see config/edge.example.yaml)",
    ]


def test_config_file_missing_or_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ConfigProblems, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigProblems, match="cannot read the config file"):
        load_config(tmp_path / "bin.yaml")


def test_parse_config_uses_the_given_source_name_and_base_dir(cfg_dir: Path) -> None:
    with pytest.raises(ConfigProblems) as err:
        parse_config(BASE + "colour: red\n", "inline.yaml", cfg_dir)
    assert str(err.value).startswith("inline.yaml:9: colour: ")


# --------------------------------------------------------------------------- good configs
def test_minimal_config_gets_defaults(cfg_dir: Path) -> None:
    cfg = load_config(write(cfg_dir, BASE))
    assert cfg.device == "box-1"
    assert cfg.model.labels == "coco" and cfg.model.format == "auto"
    assert cfg.detect.score_threshold == 0.35 and cfg.mqtt.port == 1883 and cfg.sinks == ["mqtt"]
    assert cfg.cameras[0].source.kind == "file"


def test_relative_paths_resolve_against_the_config_directory(
    cfg_dir: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    (cfg_dir / "sub").mkdir()
    (cfg_dir / "sub" / "pw.txt").write_text("s3cret\n")
    text = BASE + dedent(
        """
          labels: labels.txt
        state_dir: state
        backend:
          tensorrt:
            engine_dir: engines
        mqtt:
          password: {file: sub/pw.txt}
          tls:
            enabled: true
            ca_file: ca.pem
            cert_file: ./cert.pem
            key_file: sub/../key.pem
          outbox:
            path: outbox.sqlite
        """
    )
    path = write(cfg_dir, text)
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))  # a cwd that has none of these files
    cfg = load_config(path)
    assert cfg.model.path == cfg_dir / "model.onnx"
    assert cfg.model.labels == cfg_dir / "labels.txt"
    source = cfg.cameras[0].source
    assert isinstance(source, schema.FileSource) and source.path == cfg_dir / "video.avi"
    assert cfg.state_dir == cfg_dir / "state"
    assert cfg.backend.tensorrt.engine_dir == cfg_dir / "engines"
    assert cfg.mqtt.tls.ca_file == cfg_dir / "ca.pem"
    assert Path(cfg.mqtt.tls.key_file or "").resolve() == cfg_dir / "key.pem"
    assert cfg.mqtt.outbox.path == cfg_dir / "outbox.sqlite"
    assert reveal(cfg.mqtt.password) == "s3cret"


def test_relative_config_path_from_another_cwd(cfg_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(cfg_dir, BASE)
    monkeypatch.chdir(cfg_dir.parent)
    cfg = load_config(Path(cfg_dir.name) / "edge.yaml")
    assert cfg.model.path.is_absolute() and cfg.model.path == cfg_dir / "model.onnx"


def test_absolute_and_home_paths_are_kept(cfg_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(cfg_dir))
    cfg = load_config(write(cfg_dir, BASE.replace("path: model.onnx", "path: ~/model.onnx")))
    assert cfg.model.path == cfg_dir / "model.onnx"
    cfg = load_config(write(cfg_dir, BASE.replace("path: model.onnx", f"path: {cfg_dir / 'model.onnx'}")))
    assert cfg.model.path == cfg_dir / "model.onnx"


def test_literal_password_is_redacted(cfg_dir: Path) -> None:
    cfg = load_config(write(cfg_dir, BASE + "mqtt:\n  password: hunter2\n"))
    assert isinstance(cfg.mqtt.password, SecretStr)
    assert "hunter2" not in repr(cfg) and "hunter2" not in cfg.model_dump_json()
    assert reveal(cfg.mqtt.password) == "hunter2"


def test_default_device_name_from_odd_host_names() -> None:
    import re

    for host in ("my host", "-lead.local", "x" * 100, "", "___"):
        name = schema._default_device(host)
        assert re.match(schema.NAME_RE, name), (host, name)


# --------------------------------------------------------------------------- the schema itself
def _models() -> List[Type[BaseModel]]:
    return [
        v for v in vars(schema).values()
        if isinstance(v, type) and issubclass(v, BaseModel) and v.__module__ == schema.__name__
    ]


def _reachable(root: Type[BaseModel]) -> Iterator[Type[BaseModel]]:
    seen: Set[type] = set()
    todo: List[object] = [root]
    while todo:
        t = todo.pop()
        if isinstance(t, type) and issubclass(t, BaseModel):
            if t in seen:
                continue
            seen.add(t)
            yield t
            todo += [f.annotation for f in t.model_fields.values()]
        else:
            todo += list(typing.get_args(t))


def test_every_field_of_every_model_has_a_description() -> None:
    models = set(_models()) | set(_reachable(Config))
    assert len(models) >= 15
    missing = [
        f"{m.__name__}.{name}"
        for m in models
        if m.__module__ == schema.__name__
        for name, field in m.model_fields.items()
        if not (field.description or "").strip()
    ]
    assert missing == []


def test_every_model_forbids_unknown_keys() -> None:
    for m in _reachable(Config):
        if m.__module__ == schema.__name__:
            assert m.model_config.get("extra") == "forbid", m.__name__


def test_the_whole_schema_is_reachable_from_config() -> None:
    reachable = set(_reachable(Config))
    unreachable = [m.__name__ for m in _models() if m not in reachable and m is not schema.Strict]
    assert unreachable == []


# --------------------------------------------------------------------------- secrets
def test_reveal_literal_and_none() -> None:
    assert reveal(None) is None
    assert reveal(SecretStr("abc")) == "abc"


def test_reveal_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGE_TEST_PW", "from-env")
    assert reveal(SecretRef(env="EDGE_TEST_PW")) == "from-env"
    monkeypatch.delenv("EDGE_TEST_PW")
    with pytest.raises(ConfigError) as err:
        reveal(SecretRef(env="EDGE_TEST_PW"), "mqtt.password")
    assert str(err.value).startswith("mqtt.password: environment variable EDGE_TEST_PW is not set (")
    assert err.value.hint and err.value.exit_code == EXIT_CONFIG


def test_reveal_from_file_strips_the_newline(tmp_path: Path) -> None:
    f = tmp_path / "pw"
    f.write_text("  from-file \n")
    assert reveal(SecretRef(file=f)) == "from-file"
    with pytest.raises(ConfigError, match=r"cannot read .*nope: No such file or directory") as err:
        reveal(SecretRef(file=tmp_path / "nope"), "mqtt.password")
    assert isinstance(err.value, EdgeError) and "\n" not in str(err.value)


def test_reveal_from_credentials_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mqtt-pw").write_text("from-cred\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert reveal(SecretRef(credential="mqtt-pw")) == "from-cred"
    with pytest.raises(ConfigError, match="cannot read"):
        reveal(SecretRef(credential="other"))
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    with pytest.raises(ConfigError, match=r"\$CREDENTIALS_DIRECTORY is unset") as err:
        reveal(SecretRef(credential="mqtt-pw"))
    assert "LoadCredential=" in (err.value.hint or "")


def test_secret_ref_needs_exactly_one_source() -> None:
    from pydantic import ValidationError

    for kwargs in ({}, {"env": "A", "file": Path("b")}, {"env": "A", "credential": "c"}):
        with pytest.raises(ValidationError, match="give exactly one of env, file or credential"):
            SecretRef(**kwargs)  # type: ignore[arg-type]


def test_reveal_rejects_what_is_not_a_secret() -> None:
    with pytest.raises(TypeError, match=r"mqtt\.password: expected a SecretStr or SecretRef"):
        reveal("plain", "mqtt.password")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="no env, file or credential given"):
        reveal(SecretRef.model_construct(env=None, file=None, credential=None))
