"""Deployable forms: the same computation as the reference modules, rewritten at export
time into the ops each runtime runs fast.

The reference modules in :mod:`mobattn.attention` are the parity contract and stay as
they are. A *form* is an export-time rewrite of a copy of the module: every token mixer
is wrapped by its deployable twin (which reads the reference's own parameters, so a
checkpoint needs no conversion), the model's global pooling becomes a 4-D mean, and for
onnxruntime's mobile providers GELU is written without Erf. Exporters validate the
rewritten program against the *reference* module, so a form that changed the numbers
would fail its export.

==============  =======================================================================
form            used by
==============  =======================================================================
``reference``   ONNX (default) and Core ML: the modules as written
``xnnpack``     ExecuTorch, always: no op left to ExecuTorch's portable kernels
``mobile``      ONNX ``--form mobile``: ops onnxruntime's NNAPI and Core ML providers take
``ane``         Core ML ``--layout ane``: the Neural Engine's 4-D channels-first layout
``litert``      LiteRT, always: the xnnpack form with no batch-1 ``bmm`` (LiteRT's
                converter writes one as FULLY_CONNECTED with a computed weight, which its
                XNNPACK delegate does not take)
==============  =======================================================================
"""

from __future__ import annotations

import copy
import importlib
import pkgutil
from dataclasses import dataclass

from torch import nn

from mobattn.errors import MobattnError, unknown_name_error
from mobattn.models.swiftformer import SwiftFormer

from .ane import ane_layout
from .hilo import DeployHiLo
from .models import MODELS
from .ops import TWINS, ErfFreeGELU, Twin

# Every module of this package registers its twins (``@twin_of``) when imported: a new
# mechanism's file is found without being listed anywhere.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f".{_module.name}", __name__)

# Reference module -> its twin in the xnnpack form (the mobile form uses the same twins).
MIXERS: dict[type[nn.Module], type[Twin]] = TWINS["xnnpack"]


@dataclass(frozen=True)
class Form:
    name: str
    rewrite_mixers: bool
    erf_free_gelu: bool
    summary: str
    ane_layout: bool = False
    concat_padding: bool = False  # zero padding as Concat (onnxruntime's Core ML provider has no Pad)
    split_batch1_bmm: bool = False  # a batch-1 q k^T as a batch-2 bmm over halves of the channels


FORMS: dict[str, Form] = {
    f.name: f
    for f in (
        Form("reference", False, False, "the modules as written (the parity contract)"),
        Form("xnnpack", True, False, "rank-3 bmm attention, last-axis softmax, sums as 4-D means"),
        Form(
            "mobile", True, True, "the xnnpack form, GELU without Erf, padding as Concat", concat_padding=True
        ),
        Form("ane", False, False, "4-D channels-first token mixers, 1x1 convs, no transposes", True),
        Form(
            "litert",
            True,
            False,
            "the xnnpack form, no batch-1 bmm (LiteRT's XNNPACK)",
            split_batch1_bmm=True,
        ),
    )
}


def get_form(name: str) -> Form:
    if name not in FORMS:
        raise unknown_name_error("form", name, list(FORMS))
    return FORMS[name]


def _swap_children(module: nn.Module, form: Form) -> None:
    for name, child in module.named_children():
        if isinstance(child, Twin):  # already a deployable form (e.g. the ANE layout's): left whole
            continue
        twin = MIXERS.get(type(child)) if form.rewrite_mixers else None
        if twin is not None:
            setattr(module, name, twin(child))
        elif form.erf_free_gelu and isinstance(child, nn.GELU) and child.approximate == "none":
            setattr(module, name, ErfFreeGELU())
        else:
            _swap_children(child, form)


def deployable(module: nn.Module, form: str) -> nn.Module:
    """A copy of ``module`` (already folded: one head) in ``form``; the reference form
    returns ``module`` itself."""
    spec = get_form(form)
    if spec.name == "reference":
        return module
    module = copy.deepcopy(module).eval()
    if spec.rewrite_mixers and type(module) in MIXERS:  # a bare token mixer
        module = MIXERS[type(module)](module)
    else:
        if spec.ane_layout:
            if not isinstance(module, SwiftFormer):
                raise MobattnError("--layout ane applies to models (the SwiftFormer backbone)")
            ane_layout(module)
        if type(module) in MODELS:
            module.__class__ = MODELS[type(module)]
        _swap_children(module, spec)
    for sub in module.modules():
        if isinstance(sub, DeployHiLo):
            sub.concat_padding = spec.concat_padding
            sub.split_batch1_bmm = spec.split_batch1_bmm
    return module
