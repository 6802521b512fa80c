# `make test` and `make run` set up .venv/ themselves on a machine with only Python 3.11.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check
BENCH := results/benchmarks

.PHONY: venv test test-fast lint wheel-check run benchmarks gpu-wheels clean

venv: $(STAMP)

# torch first, pinned alone: a looser requirement would pull the CUDA build.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) -c constraints.txt torch==2.13.0
	$(PIP) -c constraints.txt -e '.[dev,executorch,fleet,litert]'
	touch $(STAMP)

# The import layers (pyproject's [tool.importlinter]) are checked on a view of the
# installed layout: exporters/ and bench/ appear as mobattn/exporters and mobattn/bench.
IMPORT_VIEW := $(VENV)/import-view
MAX_LINES := 400
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	rm -rf $(IMPORT_VIEW) && mkdir -p $(IMPORT_VIEW)/mobattn
	for f in mobattn/*; do ln -s "$(CURDIR)/$$f" $(IMPORT_VIEW)/mobattn/; done
	ln -s "$(CURDIR)/exporters" $(IMPORT_VIEW)/mobattn/exporters
	ln -s "$(CURDIR)/bench" $(IMPORT_VIEW)/mobattn/bench
	cd $(IMPORT_VIEW) && PYTHONPATH=. $(CURDIR)/$(BIN)/lint-imports --config $(CURDIR)/pyproject.toml --no-cache
	@over="$$(find mobattn bench exporters -name '*.py' | xargs wc -l | awk '$$2 != "total" && $$1 > $(MAX_LINES)')"; \
	if [ -n "$$over" ]; then echo "source files over $(MAX_LINES) lines (split them along a seam):"; echo "$$over"; exit 1; fi

# Everything, as CI runs it: two test processes (pytest-xdist), one per core of the
# 2-core machine CI runs on: most tests wait on single-threaded exports or child processes.
PYTEST := $(BIN)/python -m pytest -q -n 2
test: venv lint wheel-check
	$(PYTEST)

# The package as a user of a package index gets it: a wheel built from this tree,
# installed into a new environment (no editable paths), its command line run from
# outside the checkout (about a minute, most of it installing torch from pip's cache).
WHEEL_ENV := $(VENV)/wheel-check
wheel-check: venv
	rm -rf $(WHEEL_ENV) build && mkdir -p $(WHEEL_ENV)/dist
	$(BIN)/python -m pip wheel --quiet --no-deps --no-build-isolation -w $(WHEEL_ENV)/dist .
	$(PYTHON) -m venv $(WHEEL_ENV)/env
	$(WHEEL_ENV)/env/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt torch==2.13.0
	$(WHEEL_ENV)/env/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt $(WHEEL_ENV)/dist/*.whl
	cd $(WHEEL_ENV) && env/bin/mobattn --help > /dev/null
	cd $(WHEEL_ENV) && env/bin/mobattn export --attention eaa --dim 32 --hw 7x7 --to onnx --out exports --json > export.json
	cd $(WHEEL_ENV) && env/bin/python -c "import json; r = json.load(open('export.json')); assert r[0]['status'] == 'ok', r"
	@echo "wheel-check: $$(ls $(WHEEL_ENV)/dist) installs and exports in a clean environment"

# The fast subset for the edit loop (under a minute once .venv exists): no slow exports.
# One process: its tests are short and CPU-bound, so a second would only add its start.
test-fast: venv
	$(BIN)/python -m pytest -q -m "not slow"

# The main job on its defaults, in a few minutes on 2 cores: export, compare, tabulate, plot.
run: venv
	$(BIN)/mobattn export --model swiftformer_s --to onnx,coreml --out exports --force
	$(BIN)/mobattn sweep --preset quick --results results/quick.jsonl
	$(BIN)/mobattn table --models swiftformer_xs,swiftformer_s --backend onnxruntime --profile quick \
		--results results/quick-models.jsonl
	$(BIN)/mobattn report results/quick.jsonl results/quick-models.jsonl --out results/quick-report --force

# The published page: real sweeps on this machine (about an hour on 2 cores), resumable.
benchmarks: venv
	$(BIN)/mobattn sweep --preset attention-scaling --results $(BENCH)/attention-scaling.jsonl
	$(BIN)/mobattn sweep --preset runtime-parity --results $(BENCH)/runtime-parity.jsonl
	$(BIN)/mobattn sweep --preset families --results $(BENCH)/families.jsonl
	$(BIN)/mobattn sweep --preset swap-experiment --results $(BENCH)/swap-experiment.jsonl
	$(BIN)/mobattn sweep --preset precision --results $(BENCH)/precision.jsonl
	$(BIN)/mobattn bench --model swiftformer_s --backend onnxruntime,executorch,litert --precision fp32,int8 --results $(BENCH)/precision-models.jsonl
	$(BIN)/mobattn table --models swiftformer_xs,swiftformer_s,swiftformer_l1,swiftformer_l3,efficientformer_l1,efficientformer_l3,efficientformer_l7,deit_tiny,deit_small,mobilevit_xs,mobilevit_s,mobilevitv2_100 --backend onnxruntime,executorch,litert --results $(BENCH)/families.jsonl --out $(BENCH)/families.md --force
	$(BIN)/python bench/scripts/export_speed.py > $(BENCH)/export_speed.txt
	$(BIN)/python bench/scripts/fidelity.py > $(BENCH)/fidelity.txt
	$(BIN)/python bench/scripts/coreml_agreement.py > $(BENCH)/coreml_agreement.md
	$(BIN)/python bench/scripts/int8_recipe_speed.py > $(BENCH)/int8_recipe_speed.md
	$(BIN)/python bench/scripts/real_fidelity.py ../shared/real --results $(BENCH)/real_fidelity.jsonl > $(BENCH)/real_fidelity.md
	$(BIN)/mobattn fidelity --model vit_tiny_patch16_224 --weights ../shared/real/vit_tiny_augreg/vit_tiny_patch16_224.augreg_in21k_ft_in1k.pth --data ../shared/real/ilsvrc2012-val-1300/labels.csv --files ../shared/real/ilsvrc2012-val-1300/evaluation.txt --to onnx,executorch,litert,coreml --precision fp32,fp16,int8 --calibration ../shared/real/ilsvrc2012-val-1300/calibration.txt --results $(BENCH)/fidelity-vit.jsonl --format md > $(BENCH)/accuracy_after_conversion.md
	$(BIN)/python bench/scripts/runtime_parity.py > $(BENCH)/runtime_parity.md
	$(BIN)/mobattn sweep --preset litert-parity --results $(BENCH)/litert-parity.jsonl
	$(BIN)/python bench/scripts/litert_parity.py > $(BENCH)/litert_parity.md
	$(BIN)/mobattn export --model swiftformer_xs --to onnx,executorch,litert --sizes 224,256,288,320,384,448,512 --out /tmp/mobattn-sweep --force
	$(BIN)/mobattn bench /tmp/mobattn-sweep/swiftformer_xs-sizes224-256-288-320-384-448-512.onnx --results $(BENCH)/resolution-one-artifact.jsonl
	$(BIN)/mobattn bench /tmp/mobattn-sweep/swiftformer_xs-sizes224-256-288-320-384-448-512.pte --results $(BENCH)/resolution-one-artifact.jsonl
	$(BIN)/mobattn bench /tmp/mobattn-sweep/swiftformer_xs-sizes224-256-288-320-384-448-512.tflite --results $(BENCH)/resolution-one-artifact.jsonl
	$(BIN)/python bench/scripts/flexible_cost.py --out /tmp/mobattn-flexible --results $(BENCH)/flexible.jsonl > $(BENCH)/flexible_cost.md
	$(BIN)/python bench/scripts/litert_coverage.py > $(BENCH)/litert_coverage.md
	$(BIN)/python bench/scripts/mobile_usability.py > $(BENCH)/mobile_usability.md
	$(BIN)/python bench/scripts/ane_layout.py > $(BENCH)/ane_layout.md
	$(BIN)/python bench/scripts/engine_speed.py --out $(BENCH)/engine-speed.json --markdown $(BENCH)/engine_speed.md
	$(BIN)/python bench/scripts/adaptive_profile.py > $(BENCH)/adaptive_profile.md
	$(BIN)/python bench/scripts/command_overhead.py --markdown $(BENCH)/command_overhead.md
	$(BIN)/python bench/scripts/gpu_report.py --plots docs/benchmarks > $(BENCH)/gpu.md
	$(BIN)/python bench/scripts/fleet_makespan.py > $(BENCH)/fleet_makespan.md
	$(BIN)/python bench/scripts/fleet_run.py >> $(BENCH)/fleet_makespan.md
	$(BIN)/mobattn report $(BENCH)/attention-scaling.jsonl $(BENCH)/precision.jsonl $(BENCH)/precision-models.jsonl $(BENCH)/runtime-parity.jsonl $(BENCH)/families.jsonl $(BENCH)/swap-experiment.jsonl $(BENCH)/litert-parity.jsonl --out docs/benchmarks --page BENCHMARKS.md --force

# Wheels the GPU machine lacks (it has torch and no internet), for bench/scripts/gpu_sweep.sh:
# carried to it as the ignored folder .gpu-wheels/.
gpu-wheels: venv
	$(BIN)/python -m pip download --quiet --only-binary=:all: --python-version 3.12 \
		--platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
		-d .gpu-wheels -c constraints.txt click rich numpy

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .import_linter_cache exports results/quick*
