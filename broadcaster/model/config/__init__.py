"""Configuration: YAML with line marks, the pydantic schema, and the checks that join them."""

from broadcaster.model.config.load import load_campaign
from broadcaster.model.config.schema import Config

__all__ = ["Config", "load_campaign"]
