"""mobattn: efficient attention for mobile vision, implemented, exported and measured."""

__version__ = "0.2.0"

from .attention import create_attention, list_attentions
from .errors import MobattnError
from .models import create_model, get_model_config, list_models

__all__ = [
    "__version__",
    "MobattnError",
    "create_attention",
    "create_model",
    "get_model_config",
    "list_attentions",
    "list_models",
]
