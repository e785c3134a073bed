# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
AVATAR_HOME ?= $(CURDIR)/.avatar
DEMO_OUT ?= $(AVATAR_HOME)/demo
DEMO_PORT ?= 8765
# the demo's GAN fine-tunes the shipped starter (starter:demo, trained by the same commands for
# longer: avatar_platform/starters/demo/MODEL_CARD.md) on the freshly generated dataset
DEMO_INIT ?= starter:demo
DEMO_FINETUNE_STEPS ?= 100
# picture → avatar: the diffusion's best sample, fitted to the picture (projection, then pivotal tuning)
DEMO_REFINE_STEPS ?= 100
DEMO_TUNE_STEPS ?= 50

export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export RAY_USAGE_STATS_ENABLED ?= 0
export AVATAR_HOME

.PHONY: install demo test lint format bench clean browser serve gltf-validator

# The venv is (re)built when the pins change; torch is named with the rest so pip cannot move it.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# generate → fine-tune the starter GAN (skipped when its model exists: re-running the demo is
# cheap) → sample → style diffusion → registry → picture → avatars → serve
demo: $(STAMP)
	$(BIN)/avatar-platform generate --preset demo --out $(DEMO_OUT)/dataset
	$(BIN)/avatar-platform dataset info $(DEMO_OUT)/dataset
	test -d $(DEMO_OUT)/gan/model || $(BIN)/avatar-platform train gan --preset demo \
		--init $(DEMO_INIT) --steps $(DEMO_FINETUNE_STEPS) \
		--data $(DEMO_OUT)/dataset --out $(DEMO_OUT)/gan
	$(BIN)/avatar-platform sample --model $(DEMO_OUT)/gan --seeds 0-3 --views 4 --frames 24 \
		--walk 0,1 --mesh --mesh-level auto --out $(DEMO_OUT)/samples
	test -d $(DEMO_OUT)/diffusion/model || $(BIN)/avatar-platform train diffusion --preset demo \
		--generator $(DEMO_OUT)/gan --out $(DEMO_OUT)/diffusion
	$(BIN)/avatar-platform registry register $(DEMO_OUT)/diffusion
	$(BIN)/avatar-platform registry promote styleavatar3d latest --alias champion
	$(BIN)/avatar-platform dataset export $(DEMO_OUT)/dataset --yaw 0 --count 1 --style anime \
		--out $(DEMO_OUT)/pictures
	$(BIN)/avatar-platform sample --model models:/styleavatar3d@champion \
		--image "$$(ls $(DEMO_OUT)/pictures/*.png | head -n 1)" --num-samples 4 --views 4 \
		--refine $(DEMO_REFINE_STEPS) --tune $(DEMO_TUNE_STEPS) \
		--frames 24 --mesh --mesh-level auto --out $(DEMO_OUT)/from-image
	# the champion behind Ray Serve for one request (the same picture), then stopped
	$(BIN)/avatar-platform serve --model models:/styleavatar3d@champion --port $(DEMO_PORT) & \
	server=$$!; \
	$(BIN)/avatar-platform serve request --url http://127.0.0.1:$(DEMO_PORT) --wait 180 \
		--image "$$(ls $(DEMO_OUT)/pictures/*.png | head -n 1)" --num-samples 2 \
		--out $(DEMO_OUT)/served; \
	status=$$?; kill $$server; wait $$server; exit $$status
	@echo ""
	@echo "Models:  $(DEMO_OUT)/gan        the 3D GAN: $(DEMO_INIT) fine-tuned $(DEMO_FINETUNE_STEPS) steps on the dataset"
	@echo "         $(DEMO_OUT)/diffusion  the style diffusion on that GAN = models:/styleavatar3d@champion"
	@echo "Look at: $(DEMO_OUT)/dataset/preview.png   (the dataset: styles x views; procedural, no model)"
	@echo "         $(DEMO_OUT)/samples/views.png      (gan: seeds x views)"
	@echo "         $(DEMO_OUT)/samples/turntable-seed0.gif, walk-0-1-w.gif, mesh-seed0.glb (gan)"
	@echo "         $(DEMO_OUT)/samples/mesh-seed0.png   (gan: that mesh, rendered from 5 sides)"
	@echo "         $(DEMO_OUT)/diffusion/model/eval.png (diffusion: held-out pictures | their avatars)"
	@echo "         $(DEMO_OUT)/from-image/input.png, views.png (champion: a picture -> 4 avatars)"
	@echo "         $(DEMO_OUT)/from-image/refine-before-after.png (the best of them, fitted to the picture:"
	@echo "             $(DEMO_REFINE_STEPS) projection + $(DEMO_TUNE_STEPS) tuning steps; a model folder in from-image/refined)"
	@echo "         $(DEMO_OUT)/served/avatar0-views.png, avatar0-mesh.glb (champion, served)"
	@echo "The starter alone: $(BIN)/avatar-platform sample --model $(DEMO_INIT) --seeds 0-3 --mesh"
	@echo "Registry: $(BIN)/avatar-platform registry list"
	@echo "Serve:   make serve   (then open http://127.0.0.1:8000/ and upload from-image/input.png)"
	@echo "MLflow:  $(BIN)/mlflow ui --backend-store-uri sqlite:///$(AVATAR_HOME)/mlflow.db"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The web page's test drives Debian's Chromium (no browser download): installed here if missing.
browser:
	@if [ -z "$$AVATAR_CHROMIUM" ] && ! command -v chromium >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the web page's browser test"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get install -y -q chromium >/dev/null 2>&1 || \
		{ $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q chromium >/dev/null; } || \
		{ echo "error: could not install chromium; install it (apt-get install chromium)" \
		       "or set AVATAR_CHROMIUM to a Chromium binary"; exit 1; }; \
	fi

# The Khronos glTF validator (npm, the version pinned in tools/node/package-lock.json): every GLB
# that `sample` and `serve` write is checked with it (tools/validate_gltf.mjs) in the test suite.
GLTF_VALIDATOR := tools/node/node_modules/gltf-validator/package.json
$(GLTF_VALIDATOR): tools/node/package.json tools/node/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "error: npm is needed for the glTF validator" \
		"(apt-get install nodejs npm)"; exit 1; }
	npm ci --prefix tools/node --no-audit --no-fund --loglevel=error
	touch $(GLTF_VALIDATOR)

gltf-validator: $(GLTF_VALIDATOR)

test: lint browser gltf-validator
	$(BIN)/pytest -q
	$(BIN)/pytest -q -m cluster   # node loss on a simulated multi-node cluster (~4 min)

# the demo's champion behind Ray Serve: web page and API at http://127.0.0.1:8000/
serve: $(STAMP)
	$(BIN)/avatar-platform serve --model models:/styleavatar3d@champion

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/python bench/generation.py
	$(BIN)/python bench/training.py

clean:
	rm -rf $(VENV) .avatar
