"""Configuration: YAML with line marks, the pydantic schema, and the checks that join them."""

from .load import load_campaign
from .schema import Config

__all__ = ["Config", "load_campaign"]
