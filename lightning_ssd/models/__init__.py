"""LightningModules of the three training stages; plain nn.Modules live in `components/`."""

from lightning_ssd.models.base import SSDModule
from lightning_ssd.models.finetune import FineTuneModule
from lightning_ssd.models.imitation import ImitationModule
from lightning_ssd.models.mixed import MixedModule

__all__ = ["FineTuneModule", "ImitationModule", "MixedModule", "SSDModule"]
