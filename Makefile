# The two commands a user needs (see README):  make demo   and   make test
# Both create or reuse the project-local virtual environment .venv and install what they
# need from the package registries. PYTHON must be CPython 3.11 for the ROS 2 wheels.
# make test runs every test (CI too: .ci/run); make test ARGS='-m "not slow"' is the quick run that
# skips the tests marked slow (torchrun, SIGKILL resume, cmake builds, the soak, training runs).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CORE_STAMP := $(VENV)/.omama-core-installed
ROS_STAMP := $(VENV)/.omama-ros-installed

.PHONY: demo test venv ros clean-venv

demo: $(CORE_STAMP)
	$(VENV)/bin/omama demo $(ARGS)

test: $(CORE_STAMP) $(ROS_STAMP)
	bash scripts/run_tests.sh $(ARGS)

venv: $(CORE_STAMP)

ros: $(ROS_STAMP)

# torch and torchvision are pinned together in requirements/base.txt and installed in one
# pip call, so that nothing can pull another torch.
$(CORE_STAMP): requirements/base.txt requirements/test.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/base.txt -r requirements/test.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

$(ROS_STAMP): $(CORE_STAMP) requirements/ros.txt CMakeLists.txt package.xml $(wildcard msg/*.msg)
	$(PY) -m pip install --quiet -r requirements/ros.txt
	bash scripts/build_ros_interfaces.sh
	touch $@

clean-venv:
	rm -rf $(VENV)
