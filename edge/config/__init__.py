"""Configuration: the schema (:mod:`.model`) and loading with error locations (:mod:`.load`)."""

from edge.config.load import load_config, parse_config
from edge.config.model import Config

__all__ = ["Config", "load_config", "parse_config"]
