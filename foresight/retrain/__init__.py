"""Retrain: fine-tune on recent footage, gate the candidate, version it, promote or roll back."""

from foresight.retrain.config import RetrainConfig
from foresight.retrain.versions import Versions

__all__ = ["RetrainConfig", "Versions"]
