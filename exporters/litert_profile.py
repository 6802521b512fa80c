"""Where the time goes inside LiteRT: the profiler of LiteRT's own runtime library, summed per
op type and per node in the same table as onnxruntime's and ExecuTorch's
(``mobattn bench --op-profile``).

ai-edge-litert's Python ``Interpreter`` and ``CompiledModel`` expose no profiler, but the
runtime library the package ships (``ai_edge_litert/libLiteRt.so``) does, in its C API
(``litert/c/litert_profiler.h``, ``litert_compiled_model.h``). This module reaches it with
ctypes: a ``CompiledModel`` on the CPU accelerator (XNNPACK, the same delegate the
interpreter applies), created with the runtime option ``enable_profiling`` (an opaque
option whose payload is TOML, identifier ``runtime_options_string``) and ``num_threads``
(identifier ``xnnpack``), run ``runs`` times between ``LiteRtStartProfiler`` and
``LiteRtStopProfiler``, its events read with ``LiteRtGetProfilerEvents``.

XNNPACK reports each of its operators as an event of its own ("Fully Connected (NC, F32)
GEMM", as in ExecuTorch's trace, which runs the same library), so a delegated partition is
broken down; ops left on LiteRT's own kernels are events under their builtin names
("GELU"). The profiler's clock counts whole microseconds: an op shorter than that reads 0.
"""

from __future__ import annotations

import ctypes
from collections import defaultdict
from contextlib import ExitStack
from ctypes import POINTER, byref, c_char_p, c_int, c_size_t, c_uint64, c_void_p
from pathlib import Path

import numpy as np

from mobattn.errors import first_line

from .onnx_profile import TOP
from .silence import quiet_native_stderr

RUNTIME = "LiteRT profiler (C API)"
CPU_ACCELERATOR = 1  # kLiteRtHwAcceleratorCpu
LOCK_WRITE = 1  # kLiteRtTensorBufferLockModeWrite
TENSOR_TYPE_BYTES = 256  # LiteRtRankedTensorType is 72 bytes; read and passed back whole
# LiteRtProfilerEventType: an op run by LiteRT's own kernels, an op inside a delegate
OPERATOR_EVENT = 1 << 1
DELEGATE_OPERATOR_EVENTS = (1 << 2, 1 << 3)


class _Memory(ctypes.Structure):
    _fields_ = [("total", c_size_t), ("in_use", c_size_t), ("private_footprint", c_size_t)]


class _Event(ctypes.Structure):
    """``ProfiledEventData`` (litert/c/litert_profiler_event.h)."""

    _fields_ = [
        ("tag", c_char_p),
        ("event_type", c_int),
        ("start_us", c_uint64),
        ("elapsed_us", c_uint64),
        ("begin_memory", _Memory),
        ("end_memory", _Memory),
        ("metadata1", c_uint64),
        ("metadata2", c_uint64),
        ("source", c_int),
    ]


_NO_DESTRUCTOR = ctypes.CFUNCTYPE(None, c_void_p)(lambda _payload: None)


def litert_op_profile(
    path: Path, x: np.ndarray, threads: int, runs: int = 20, signature_index: int = 0
) -> dict:
    """Per op type and per node (top 20): mean milliseconds per inference and share of the
    profiled op time, over ``runs`` inferences of ``x`` (through the file's signature
    ``signature_index``) after ``runs`` unprofiled ones."""
    try:
        with quiet_native_stderr():
            events = _profiled_events(path, np.ascontiguousarray(x), threads, runs, signature_index)
    except Exception as exc:  # noqa: BLE001 - a library without the C API this reads, say
        return {"unavailable": f"LiteRT's profiler could not profile this run: {first_line(exc)}"}
    return summarise(events, runs)


def summarise(events: list[tuple[int, str, int, float]], runs: int) -> dict:
    """(event type, tag, node index, ms) events summed by node and by op type. When XNNPACK
    broke its partitions down, the partition's own event (it encloses them) is left out."""
    broken_down = any(kind in DELEGATE_OPERATOR_EVENTS for kind, *_ in events)
    per_node: dict[str, list] = defaultdict(lambda: ["", 0.0])
    for kind, tag, index, ms in events:
        if broken_down and kind == OPERATOR_EVENT and "delegate" in tag.lower():
            continue
        name = f"{tag} #{index}" if kind in DELEGATE_OPERATOR_EVENTS else f"{tag} (node {index})"
        per_node[name][0] = tag
        per_node[name][1] += ms
    total = sum(ms for _, ms in per_node.values()) or 1.0
    per_type: dict[str, float] = defaultdict(float)
    for op, ms in per_node.values():
        per_type[op] += ms
    inferences = max(runs, 1)
    result = {
        "runtime": RUNTIME,
        "inferences": inferences,
        "op_ms": sum(ms for _, ms in per_node.values()) / inferences,
        "by_op_type": [
            {"op_type": op, "ms": ms / inferences, "share": ms / total}
            for op, ms in sorted(per_type.items(), key=lambda kv: -kv[1])[:TOP]
        ],
        "by_node": [
            {"node": name, "op_type": op, "ms": ms / inferences, "share": ms / total}
            for name, (op, ms) in sorted(per_node.items(), key=lambda kv: -kv[1][1])[:TOP]
        ],
    }
    if not broken_down:
        result["note"] = "XNNPACK reported no operators of its own: a delegated partition is one row"
    return result


def _profiled_events(path: Path, x: np.ndarray, threads: int, runs: int, signature_index: int) -> list:
    lib = _library()
    with ExitStack() as owned:
        env = _made(lib.LiteRtCreateEnvironment, 0, None, step="environment")
        owned.callback(lib.LiteRtDestroyEnvironment, env)
        model = _made(lib.LiteRtCreateModelFromFile, env, str(path).encode(), step="model")
        owned.callback(lib.LiteRtDestroyModel, model)
        options = _options(lib, threads, owned)
        compiled = _made(lib.LiteRtCreateCompiledModel, env, model, options, step="compiled model")
        owned.callback(lib.LiteRtDestroyCompiledModel, compiled)
        inputs = _buffers(lib, env, model, compiled, "Input", owned, signature_index)
        outputs = _buffers(lib, env, model, compiled, "Output", owned, signature_index)
        _write(lib, inputs[0], x)
        run = _runner(lib, compiled, inputs, outputs, signature_index)
        for _ in range(runs):  # warm: XNNPACK packs weights and sizes its workspace on the first run
            run()
        profiler = _made(lib.LiteRtCompiledModelGetProfiler, compiled, step="profiler")
        _check(lib.LiteRtResetProfiler(profiler), "profiler reset")
        _check(lib.LiteRtStartProfiler(profiler), "profiler start")
        for _ in range(runs):
            run()
        _check(lib.LiteRtStopProfiler(profiler), "profiler stop")
        return _events(lib, profiler)


def _library():
    """``libLiteRt.so`` from the installed ai-edge-litert, its C functions returning status."""
    import ai_edge_litert

    lib = ctypes.CDLL(str(Path(ai_edge_litert.__file__).parent / "libLiteRt.so"))
    for name in ("LiteRtDestroyEnvironment", "LiteRtDestroyModel", "LiteRtDestroyCompiledModel"):
        getattr(lib, name).restype = None
    for name in ("LiteRtDestroyOptions", "LiteRtDestroyTensorBuffer"):
        getattr(lib, name).restype = None
    lib.LiteRtCreateOpaqueOptions.argtypes = [c_char_p, c_void_p, ctypes.CFUNCTYPE(None, c_void_p), c_void_p]
    lib.LiteRtGetProfilerEvents.argtypes = [c_void_p, c_int, POINTER(_Event)]
    lib.LiteRtRunCompiledModel.argtypes = [c_void_p, c_size_t, c_size_t, c_void_p, c_size_t, c_void_p]
    return lib


def _check(status: int, step: str) -> None:
    if status != 0:
        raise RuntimeError(f"LiteRT C API: {step} failed (status {status})")


def _made(function, *args, step: str) -> c_void_p:
    """Call a ``LiteRtCreate...``-style function whose last argument receives the handle."""
    handle = c_void_p()
    _check(function(*args, byref(handle)), step)
    return handle


def _options(lib, threads: int, owned: ExitStack) -> c_void_p:
    """CPU accelerator, profiling on, ``threads`` XNNPACK threads. The payloads are owned
    here (a no-op destructor) and outlive the options, which the caller owns."""
    options = _made(lib.LiteRtCreateOptions, step="options")
    owned.callback(lib.LiteRtDestroyOptions, options)
    _check(lib.LiteRtSetOptionsHardwareAccelerators(options, CPU_ACCELERATOR), "accelerator")
    for identifier, toml in (
        (b"runtime_options_string", b"enable_profiling = true\n"),
        (b"xnnpack", f"num_threads = {threads}\n".encode()),
    ):
        payload = ctypes.create_string_buffer(toml)
        owned.callback(_keep_alive, payload)  # the stack holds the payload until it unwinds
        opaque = _made(lib.LiteRtCreateOpaqueOptions, identifier, payload, _NO_DESTRUCTOR, step="option")
        _check(lib.LiteRtAddOpaqueOptions(options, opaque), "adding an option")  # options own it now
    return options


def _keep_alive(*_held) -> None:
    """Nothing to do: the ExitStack callback holding its arguments is the point."""


def _buffers(lib, env, model, compiled, kind: str, owned: ExitStack, signature_index: int) -> list[c_void_p]:
    """One managed tensor buffer per input (or output) of the signature, made to the
    compiled model's requirements."""
    signature = _made(lib.LiteRtGetModelSignature, model, c_size_t(signature_index), step="signature")
    count = c_size_t()
    _check(getattr(lib, f"LiteRtGetNumSignature{kind}s")(signature, byref(count)), f"{kind} count")
    buffers = []
    for index in range(count.value):
        tensor_of = getattr(lib, f"LiteRtGetSignature{kind}TensorByIndex")
        tensor = _made(tensor_of, signature, c_size_t(index), step=kind)
        tensor_type = ctypes.create_string_buffer(TENSOR_TYPE_BYTES)
        _check(lib.LiteRtGetRankedTensorType(tensor, tensor_type), f"{kind} type")
        requirements = _made(
            getattr(lib, f"LiteRtGetCompiledModel{kind}BufferRequirements"),
            compiled,
            c_size_t(signature_index),
            c_size_t(index),
            step=f"{kind} requirements",
        )
        buffer = _made(
            lib.LiteRtCreateManagedTensorBufferFromRequirements, env, tensor_type, requirements, step=kind
        )
        owned.callback(lib.LiteRtDestroyTensorBuffer, buffer)
        buffers.append(buffer)
    return buffers


def _write(lib, buffer: c_void_p, x: np.ndarray) -> None:
    size = c_size_t()
    _check(lib.LiteRtGetTensorBufferSize(buffer, byref(size)), "input size")
    if size.value != x.nbytes:
        raise RuntimeError(f"the input holds {x.nbytes} bytes; the model's input takes {size.value}")
    address = c_void_p()
    _check(lib.LiteRtLockTensorBuffer(buffer, byref(address), LOCK_WRITE), "input lock")
    ctypes.memmove(address, x.ctypes.data, x.nbytes)
    _check(lib.LiteRtUnlockTensorBuffer(buffer), "input unlock")


def _runner(lib, compiled, inputs: list, outputs: list, signature_index: int):
    ins = (c_void_p * len(inputs))(*inputs)
    outs = (c_void_p * len(outputs))(*outputs)

    def run() -> None:
        status = lib.LiteRtRunCompiledModel(compiled, signature_index, len(ins), ins, len(outs), outs)
        _check(status, "run")

    return run


def _events(lib, profiler) -> list[tuple[int, str, int, float]]:
    """The op events (event type, tag, node index, ms); the runtime's own spans (buffer
    sync, the whole invoke) and telemetry are not ops."""
    count = c_int()
    _check(lib.LiteRtGetNumProfilerEvents(profiler, byref(count)), "event count")
    events = (_Event * count.value)()
    _check(lib.LiteRtGetProfilerEvents(profiler, count, events), "events")
    kinds = (OPERATOR_EVENT, *DELEGATE_OPERATOR_EVENTS)
    return [
        (e.event_type, (e.tag or b"?").decode(errors="replace"), int(e.metadata1), e.elapsed_us / 1000.0)
        for e in events
        if e.event_type in kinds
    ]
