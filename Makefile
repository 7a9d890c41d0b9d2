# Two commands on a fresh machine: `make demo` and `make test` (both set up the environment as needed).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.clickgs-installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEMO_DIR ?= demo
DEMO_STEPS_RGB ?= 1500
DEMO_STEPS_FEATURES ?= 600

.PHONY: setup test demo bench bench-accuracy gpu-check clean

$(STAMP): pyproject.toml
	@dpkg -s libusb-1.0-0 chromium chromium-driver >/dev/null 2>&1 || ($(SUDO) apt-get update -qq && \
		$(SUDO) apt-get install -y -qq libusb-1.0-0 chromium chromium-driver)
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e ".[dev]"
	@# SAM 2 (sam2 on PyPI is a source archive whose build needs the installed torch and no CUDA compiler)
	SAM2_BUILD_CUDA=0 $(PY) -m pip install -q --no-build-isolation "sam2>=1.1"
	@touch $(STAMP)

setup: $(STAMP)

test: setup
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -p no:cacheprovider --durations=15

demo: setup
	$(VENV)/bin/clickgs synth $(DEMO_DIR)/scene
	$(VENV)/bin/ns-train click-gaussian --data $(DEMO_DIR)/scene --output-dir $(DEMO_DIR)/outputs \
		--timestamp demo --machine.device-type cpu --vis tensorboard \
		--pipeline.model.rgb-stage-steps $(DEMO_STEPS_RGB) --pipeline.model.feature-stage-steps $(DEMO_STEPS_FEATURES) \
		--pipeline.model.num-downscales 0 --pipeline.model.losses.num-sampled-pixels 2048 \
		--pipeline.model.gfl.start-step 300 --pipeline.model.gfl.update-every 100 \
		--steps-per-eval-image 500 --steps-per-eval-all-images 100000 --steps-per-save 500
	$(VENV)/bin/clickgs render-features --load-config $(DEMO_DIR)/outputs/scene/click-gaussian/demo/config.yml \
		--output-dir $(DEMO_DIR)/feature_maps
	@echo "Demo done: PCA-coloured feature maps in $(DEMO_DIR)/feature_maps; open the run with"
	@echo "  $(VENV)/bin/ns-viewer --load-config $(DEMO_DIR)/outputs/scene/click-gaussian/demo/config.yml"

bench: setup
	$(PY) benchmarks/bench_renderer.py

bench-accuracy: setup
	$(PY) benchmarks/bench_accuracy.py

# The README's GPU figures (CUDA vs CPU rasterizer, click, feature step, SAM); on a CPU machine the CPU rows only.
gpu-check: setup
	$(PY) benchmarks/gpu_check.py

clean:
	rm -rf $(DEMO_DIR)
