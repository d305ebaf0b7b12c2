# Two commands for a newcomer: `make demo` and `make test`. Both create .venv if needed.
# `make test` also installs the real peer servers the tests run against (`make peers`):
# mcp==1.26.0 in its own venv (.venv-mcp126) and Node's server-everything (npm ci).
# `make demo` needs neither.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

VENV126  := .venv-mcp126
STAMP126 := $(VENV126)/.installed
REQS126  := tests/peers/requirements-mcp126.txt
NPM      ?= npm
NODE_STAMP := node_modules/.installed

# One environment per agent framework (their pins conflict): .venv-<name>, with
# `-e .[testing,tests,lint,<extra>]` pinned by tests/integrations/<name>/constraints.txt.
# A framework is a directory tests/integrations/<name>/ (its extra: <name> with - for _).
FRAMEWORKS := $(sort $(patsubst tests/integrations/%/constraints.txt,%,$(wildcard tests/integrations/*/constraints.txt)))
FW_STAMPS  := $(foreach f,$(FRAMEWORKS),.venv-$(f)/.installed)

.PHONY: demo test lint typecheck pytest peers integrations conformance bench bench-stdio clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# mcp 1.26 cannot share .venv (mcp 2.3): the peer of tests/peers/mcp126_server.py.
$(STAMP126): $(REQS126)
	test -x $(VENV126)/bin/python || $(PYTHON) -m venv $(VENV126)
	$(VENV126)/bin/python -m pip install --quiet --disable-pip-version-check -r $(REQS126)
	touch $(STAMP126)

# npm ci starts from an empty node_modules, exactly as package-lock.json says.
$(NODE_STAMP): package.json package-lock.json
	$(NPM) ci --no-audit --no-fund
	touch $(NODE_STAMP)

peers: $(STAMP126) $(NODE_STAMP)

# An optional tests/integrations/<name>/requirements.txt adds test-only packages (e.g.
# LangGraph beside langchain-core), under the same constraints.
.SECONDEXPANSION:
.venv-%/.installed: pyproject.toml tests/integrations/%/constraints.txt \
		$$(wildcard tests/integrations/$$*/requirements.txt)
	test -x .venv-$*/bin/python || $(PYTHON) -m venv .venv-$*
	.venv-$*/bin/python -m pip install --quiet --disable-pip-version-check \
		-e '.[testing,tests,lint,$(subst _,-,$*)]' -c tests/integrations/$*/constraints.txt \
		$(addprefix -r ,$(wildcard tests/integrations/$*/requirements.txt))
	touch $@

# Each adapter's tests and strict typing, in its framework's environment. The installs
# are network-bound, so they run three at a time.
integrations:
	$(if $(FW_STAMPS),$(MAKE) -j3 $(FW_STAMPS))
	@set -e; for f in $(FRAMEWORKS); do \
		echo "== $$f"; \
		.venv-$$f/bin/mypy $$(find resilient_mcp/integrations tests/integrations/$$f examples/integrations -path "*$$f*" -name "*.py"); \
		RESILIENT_MCP_FRAMEWORK=$$f .venv-$$f/bin/pytest -q tests/integrations/$$f; \
	done

demo: $(STAMP)
	$(PY) examples/demo.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP) peers
	$(VENV)/bin/pytest

# The official MCP conformance suite against our client (tests/conformance/run.py):
# every client scenario we claim, each run on its own, no expected failures. The suite
# and the Node 22 it needs come with npm ci (package.json).
conformance: $(STAMP) $(NODE_STAMP)
	$(PY) tests/conformance/run.py

# The documentation site, in its own environment (docs/requirements.txt): `make docs`
# serves it on 127.0.0.1:8000; `make site` builds it with --strict (broken links, pages
# or docstrings fail), as `make test` does.
DOCS_STAMP := .venv-docs/.installed
$(DOCS_STAMP): docs/requirements.txt
	test -x .venv-docs/bin/python || $(PYTHON) -m venv .venv-docs
	.venv-docs/bin/python -m pip install --quiet --disable-pip-version-check -r docs/requirements.txt
	touch $@

site: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 .venv-docs/bin/mkdocs build --strict --quiet -d build/site

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 .venv-docs/bin/mkdocs serve -a 127.0.0.1:8000

# The main suite, the frameworks' (installs, then tests) and the conformance suite run
# side by side: the installs are network-bound, the main suite leaves the second core
# mostly idle, and conformance is short. Output is kept per target so the logs do not
# interleave.
test: lint typecheck
	$(MAKE) --no-print-directory -j3 --output-sync=target pytest integrations conformance site

# `make bench BASELINE=<rev>` also measures resilient_mcp as it was at <rev>, side by side.
BASELINE ?=
bench: $(STAMP)
	$(PY) benchmarks/bench_client.py $(if $(BASELINE),--baseline $(BASELINE))

# connect → first call → close over stdio against server-everything, beside mcp 2.3 and fastmcp.
bench-stdio: $(STAMP) peers
	$(PY) benchmarks/bench_stdio.py

clean:
	rm -rf $(VENV) $(VENV126) .venv-docs $(foreach f,$(FRAMEWORKS),.venv-$(f)) node_modules .mypy_cache .ruff_cache build dist
