# Two commands do all the set-up on a fresh machine with Python 3.10+:
#   make demo   creates .venv, installs vlvae and runs the main job
#   make test   creates .venv, installs vlvae with its test extras and runs the tests
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_PIN := torch==2.13.0

.PHONY: demo test venv clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e ".[test]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(VENV)/bin/vlvae reproduce --preset quick --out runs/quick

test: venv
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) runs
