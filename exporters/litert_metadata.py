"""mobattn's metadata in a .tflite: one entry of the flatbuffer's ``metadata`` list, named
``mobattn``, whose buffer holds the key/value pairs as JSON (the slot TFLite keeps for a
producer's own facts, beside ``min_runtime_version``). The interpreter ignores it; ``validate
FILE.tflite`` reads its subject from it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mobattn.errors import MobattnError, first_line

NAME = "mobattn"
IDENTIFIER = b"TFL3"  # the TFLite flatbuffer's file identifier
FLATBUFFER_LIMIT = 2**31  # a flatbuffer's offsets are 32-bit


def write_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Rewrite ``path`` with ``metadata`` added (any earlier ``mobattn`` entry replaced).
    A model too large to repack (2 GB) is left as it is."""
    from ai_edge_litert import schema_py_generated as schema

    content = path.read_bytes()
    model = unpacked(content)
    if model is None:
        return
    entry = schema.BufferT()
    entry.data = np.frombuffer(json.dumps(metadata, sort_keys=True).encode(), np.uint8)
    model.buffers.append(entry)
    named = schema.MetadataT()
    named.name, named.buffer = NAME, len(model.buffers) - 1
    model.metadata = [m for m in model.metadata or [] if _text(m.name) != NAME] + [named]
    path.write_bytes(packed(model))


def unpacked(content: bytes):
    """The .tflite ``content`` as schema objects to edit (``ModelT``), buffers stored after
    the flatbuffer (ai-edge-quantizer writes its files so) moved into it; None for a model
    too large for that (2 GB: its offsets into the file would move)."""
    from ai_edge_litert import schema_py_generated as schema

    if len(content) >= FLATBUFFER_LIMIT:
        return None
    model = schema.ModelT.InitFromPackedBuf(bytearray(content), 0)
    for buffer in model.buffers or []:
        if (buffer.offset or 0) > 1:
            buffer.data = np.frombuffer(content, np.uint8, count=buffer.size, offset=buffer.offset)
            buffer.offset = buffer.size = 0
    return model


def packed(model) -> bytes:
    """An edited ``ModelT`` as .tflite bytes."""
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=IDENTIFIER)
    return bytes(builder.Output())


def read_metadata(path: Path) -> dict[str, str]:
    """The ``mobattn`` entry's pairs; {} for a .tflite without one (another tool's)."""
    from ai_edge_litert import schema_py_generated as schema

    try:
        model = schema.Model.GetRootAs(Path(path).read_bytes(), 0)
        for index in range(model.MetadataLength()):
            entry = model.Metadata(index)
            if _text(entry.Name()) == NAME:
                said = json.loads(model.Buffers(entry.Buffer()).DataAsNumpy().tobytes())
                return {str(k): str(v) for k, v in said.items()} if isinstance(said, dict) else {}
    except Exception as exc:  # noqa: BLE001 - an unreadable flatbuffer is a corrupt artifact
        raise MobattnError(f"cannot read {path}'s metadata: {first_line(exc)}") from None
    return {}


def _text(name) -> str:
    return name.decode() if isinstance(name, bytes) else str(name or "")
