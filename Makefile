# Two entry points for a fresh machine; both create .venv and install torch's CPU wheel first,
# so that pip never resolves a multi-GB CUDA build. `make docs` builds the documentation site into site/.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE := 1

.PHONY: install demo test lint docs gpu-check

$(BIN)/python:
	$(PY) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,nas,docs,serve]'

demo: install
	$(BIN)/python -m lightning_ssd demo

test: install
	$(BIN)/python -m pytest -q -m "not slow"

# --strict: a broken link, a missing page or an unparsable docstring fails the build (and CI).
docs: install
	PYTHONPATH=$(CURDIR) $(BIN)/mkdocs build --strict --site-dir site

lint: install
	$(BIN)/ruff check lightning_ssd tests nas

# On a CUDA machine whose Python (GPU_PY) already holds the project's dependencies (nothing is installed, so that no
# CPU wheel replaces its CUDA build of torch): the GPU-marked tests (a fine-tune under FSDP in bf16-mixed), a short FSDP fit
# through the CLI, and the stream benchmark in bf16 at 1, 8 and 32 live rows on small-llava (eager and compiled) and
# on 7b-llava (eager), both at alpha = 1 (--redundant-deep-layers). Reports land in GPU_OUT.
GPU_PY ?= python3
GPU_OUT ?= results/gpu
GPU_STREAM = -m lightning_ssd bench-stream --imitation identity --redundant-deep-layers --device cuda \
	--dtype bfloat16 --draft 6 --num-requests 64 --max-rows 1 --max-rows 8 --max-rows 32 --num-repeats 3

gpu-check:
	mkdir -p $(GPU_OUT)
	PYTHONPATH=$(CURDIR) $(GPU_PY) -m pytest -q -m gpu tests/models/test_gpu.py
	PYTHONPATH=$(CURDIR) $(GPU_PY) -m lightning_ssd fit --config experiments/synthetic/finetune.yaml \
		--trainer.accelerator gpu --trainer.strategy fsdp --trainer.precision bf16-mixed --trainer.max_steps 20 \
		--trainer.default_root_dir runs/gpu/fsdp_fit --model.init_args.export_dir runs/gpu/fsdp_fit/backbone
	PYTHONPATH=$(CURDIR) $(GPU_PY) $(GPU_STREAM) --backbone small-llava --compile --output $(GPU_OUT)/stream_small_llava.json
	PYTHONPATH=$(CURDIR) $(GPU_PY) $(GPU_STREAM) --backbone 7b-llava --output $(GPU_OUT)/stream_7b_llava.json
