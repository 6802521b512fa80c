"""Keeping converters quiet: their progress bars, prints and warnings are not the
user's output. Errors still raise."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import warnings


@contextlib.contextmanager
def quiet():
    """Silence the exporters' progress prints and warnings; errors still raise."""
    names = ("torch", "coremltools", "torchao", "executorch")  # "torch" covers torch.onnx, torch.export, ...
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    # torch's child loggers carry levels and handlers of their own (bound to the real
    # stderr at their creation): only the module-wide switch reaches them
    disabled = logging.root.manager.disable
    logging.disable(max(disabled, logging.WARNING))
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(disabled)
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


@contextlib.contextmanager
def quiet_native_stderr():
    """Silence what native code writes straight to file descriptor 2 (ExecuTorch's
    runtime logs CPU probing on load)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
