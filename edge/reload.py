"""Configuration changes at run time: SIGHUP reloads and remote commands.

Only what changed is rebuilt: thresholds, classes, topics and cameras apply without
touching the engine; a change of model or backend settings opens a new engine first and
swaps it in only once it loaded, so a bad new model never stops detection. An invalid
new config is rejected with one log line and the old one stays in force.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Dict

from edge.config.load import load_config
from edge.config.model import Config
from edge.errors import ConfigError, EdgeError
from edge.health.logs import set_level

if TYPE_CHECKING:
    from edge.daemon import Daemon

log = logging.getLogger(__name__)


def engine_changed(old: Config, new: Config) -> bool:
    return (old.model, old.backend, old.state_dir) != (new.model, new.backend, new.state_dir)


def reload_config(daemon: Daemon, why: str = "reload") -> bool:
    """Re-read the config file and apply it. True if the new config is in force."""
    daemon.notifier.reloading()
    try:
        if daemon.config_path is None:
            raise ConfigError("no config file to reload (the daemon was started without one)")
        new = load_config(daemon.config_path)
        new = new.model_copy(update={"sinks": daemon.cfg.sinks}) if daemon.sinks_overridden else new
        engine = None
        if engine_changed(daemon.cfg, new):
            log.info("%s: model or backend settings changed, opening the new engine", why)
            engine = daemon.open_engine(new)
        daemon.apply_config(new, engine)
        set_level(new.log_level)
        log.info("%s: new configuration in force", why)
        return True
    except EdgeError as exc:
        text = str(exc).replace("\n", "; ")
        log.error("%s: new configuration rejected, keeping the old one: %s", why, text)
        return False
    finally:
        daemon.notifier.ready(daemon.status_line())


def _camera(cfg: Config, name: Any) -> int:
    for i, cam in enumerate(cfg.cameras):
        if cam.name == name:
            return i
    raise EdgeError(f"unknown camera {name!r}", f"cameras: {', '.join(c.name for c in cfg.cameras)}")


def apply_command(daemon: Daemon, cmd: Dict[str, Any]) -> Dict[str, Any]:
    """Carry out one validated remote command on the main thread; EdgeError explains a refusal.

    Changes made by commands last until the next reload or restart (the file is not edited).
    """
    name = cmd.get("command")
    cfg = daemon.cfg.model_copy(deep=True)
    camera = cmd.get("camera")
    if name == "set_threshold":
        value = float(cmd["value"])
        if camera is None:
            cfg.detect.score_threshold = value
        else:
            cfg.cameras[_camera(cfg, camera)].score_threshold = value
        daemon.apply_config(cfg, None)
        return {"ok": True, "camera": camera, "score_threshold": value}
    if name in ("enable_camera", "disable_camera"):
        cfg.cameras[_camera(cfg, camera)].enabled = name == "enable_camera"
        daemon.apply_config(cfg, None)
        return {"ok": True, "camera": camera, "enabled": name == "enable_camera"}
    if name == "snapshot":
        index = _camera(cfg, camera)
        if not cfg.cameras[index].enabled:
            raise EdgeError(f"camera {camera!r} is disabled", "enable it first")
        daemon.running.request_snapshot(str(camera))
        return {"ok": True, "camera": camera, "snapshot": "requested"}
    if name == "reload":
        # Validate now so the answer can name a problem, apply after answering: the reload
        # may replace the very MQTT connection that carries the answer.
        if daemon.config_path is None:
            raise EdgeError("no config file to reload", "the daemon was started without one")
        try:
            load_config(daemon.config_path)
        except ConfigError as exc:
            raise EdgeError(f"the config file is invalid: {str(exc).splitlines()[0]}", "fix it and retry") from None
        daemon.request("reload", "reload command")
        return {"ok": True, "reloading": True}
    raise EdgeError(f"unknown command {name!r}", "set_threshold, enable_camera, disable_camera, snapshot, reload")
