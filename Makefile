# yooptx — the two README commands are `make demo` and `make test`; both create or refresh .venv.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
PIP   := $(PY) -m pip install -q --disable-pip-version-check -c constraints.txt
STAMP := $(VENV)/.yooptx-installed
export PYTHONHASHSEED := 0

.PHONY: venv demo test sync-check nbtest pytest bench lab clean

# (Re)install only when the packaging inputs change: a second `make test` skips straight to the tests.
$(STAMP): setup.py settings.ini pyproject.toml constraints.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	@echo "installing yooptx and its dependencies into $(VENV) (torch pinned by constraints.txt)"
	$(PIP) --upgrade pip
	$(PIP) -e ".[dev,rl,track,ray,sweep]"
	@touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(VENV)/bin/yooptx demo

# CI entry point: notebooks and library in sync, notebook tests, then pytest.
test: venv sync-check nbtest pytest

# nbdev_export and nbdev_clean must be no-ops: the library is exported from the notebooks, never hand-edited.
sync-check: venv
	@before=$$(find nbs yooptx -type f \( -name '*.ipynb' -o -name '*.py' \) -not -path '*/.ipynb_checkpoints/*' | sort | xargs sha256sum); \
	$(VENV)/bin/nbdev_export && $(VENV)/bin/nbdev_clean; \
	after=$$(find nbs yooptx -type f \( -name '*.ipynb' -o -name '*.py' \) -not -path '*/.ipynb_checkpoints/*' | sort | xargs sha256sum); \
	if [ "$$before" != "$$after" ]; then \
	  echo "FAIL: nbdev_export/nbdev_clean changed these files (notebooks and library out of sync):"; \
	  diff <(echo "$$before") <(echo "$$after") | grep '^[<>]' | awk '{print "  " $$3}' | sort -u; \
	  echo "Run nbdev_export && nbdev_clean, then commit the result."; exit 1; fi; \
	echo "sync-check: nbdev_export and nbdev_clean are no-ops"

# tests track into MLflow only where they test tracking (into their own temporary store)
nbtest pytest: export YOOPTX_NO_TRACK := 1

nbtest: venv
	$(VENV)/bin/nbdev_test --n_workers 2 --do_print

# pytest exits 5 when it collected nothing: that must fail loudly, not pass.
pytest: venv
	@$(PY) -m pytest tests -q -p no:cacheprovider; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "FAIL: pytest collected no tests"; exit 1; fi; exit $$rc

bench: venv
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lab: venv
	$(PIP) -e ".[dev,lab]"
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=. nbs/index.ipynb $(if $(filter 0,$(shell id -u)),--allow-root,)

clean:
	rm -rf $(VENV) build *.egg-info _proc _docs .pytest_cache
