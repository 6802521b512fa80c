"""Benchmark page section (not a test): onnxruntime's mobile usability checker on the
ONNX exports of every mechanism and model, in the default form and in `--form mobile`.

    python bench/scripts/mobile_usability.py > results/benchmarks/mobile_usability.md

The verdict is the one `python -m onnxruntime.tools.check_onnx_model_mobile_usability`
prints (exporters/mobile_check.py): nodes the provider takes / all nodes, in how many
partitions. A script beside the package, not installed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnxruntime

from mobattn import get_model_config, list_attentions
from mobattn.exporters import attention_subject, export, model_subject

MODELS = ["swiftformer_xs", "swiftformer_s", "swiftformer_l1", "swiftformer_l3"]
OTHER_FAMILIES = ["efficientformer_l1", "deit_tiny", "mobilevit_xs", "mobilevitv2_100"]  # one of each
PROVIDERS = {"nnapi": "NNAPI", "coreml_mlprogram": "Core ML (ML Program)"}


def cell(verdict: dict) -> str:
    if "error" in verdict:
        return verdict["error"]
    text = f"{verdict['supported_nodes']}/{verdict['nodes']} in {verdict['partitions']}"
    missing = ", ".join(op.removeprefix("ai.onnx:") for op in verdict["unsupported_ops"])
    return text + (f" (no {missing})" if missing else "")


def main() -> None:
    subjects = [attention_subject(a, 64, (14, 14)) for a in list_attentions()]
    subjects += [model_subject(m) for m in MODELS]
    subjects += [model_subject("swiftformer_s", attention=a) for a in list_attentions() if a != "eaa"]
    subjects += [model_subject(m, resolution=get_model_config(m).input_size[1:]) for m in OTHER_FAMILIES]
    print(
        f"onnxruntime {onnxruntime.__version__}'s mobile usability checker on mobattn's ONNX exports "
        "(opset 20, fixed shapes, fp32): nodes the provider takes / nodes, in N partitions. Goal for "
        "`--form mobile`: one partition holding every node.\n"
    )
    columns = [f"{name}, {form}" for name in PROVIDERS.values() for form in ("default", "`--form mobile`")]
    print("| subject | " + " | ".join(columns) + " | max rel vs reference |")
    print("|" + " --- |" * (len(columns) + 2))
    with tempfile.TemporaryDirectory() as tmp:
        for subject in subjects:
            verdicts, max_rel = {}, []
            for form in ("reference", "mobile"):
                record = export(subject, "onnx", Path(tmp), form=form, force=True)
                if record.status != "ok":
                    raise SystemExit(f"{subject.stem()} {form}: {record.status}: {record.reason}")
                verdicts[form] = record.details["mobile_usability"]
                max_rel.append(record.validation["max_rel"])
            cells = [cell(verdicts[form][p]) for p in PROVIDERS for form in ("reference", "mobile")]
            print(f"| {subject.stem()} | " + " | ".join(cells) + f" | {max(max_rel):.1e} |")


if __name__ == "__main__":
    main()
