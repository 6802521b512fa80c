"""mobattn: efficient attention for mobile vision, implemented, exported and measured.

The names below are imported on first use (PEP 562), so ``mobattn --help`` and argument
errors start without importing torch.
"""

from mobattn.lazy import lazy_getattr

__version__ = "0.2.0"

# public name -> the module that defines it
_EXPORTS = {
    "MobattnError": "mobattn.errors",
    "create_attention": "mobattn.attention",
    "list_attentions": "mobattn.attention",
    "create_model": "mobattn.models",
    "get_model_config": "mobattn.models",
    "list_models": "mobattn.models",
}

__all__ = ["__version__", *_EXPORTS]
__getattr__ = lazy_getattr(__name__, _EXPORTS)
