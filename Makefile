# Two commands matter: `make run` and `make test`. Both install the virtualenv first if needed
# and work with no environment at all (embedded PostgreSQL and Redis under .data/); set
# DATABASE_URL and CELERY_BROKER_URL to use real servers. See README.md.

VENV ?= .venv
# The virtualenv's Python once it exists, else the system's. Re-evaluated on every use (no
# $(wildcard): make caches directory listings and would miss a venv created by `install`).
PYTHON = $(shell test -x $(VENV)/bin/python && echo $(VENV)/bin/python || echo python3)
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install run test lint check-deploy stop clean-data

help:
	@echo "make install       create $(VENV) and install the project with its dev tools"
	@echo "make run           migrate, seed the demo tenants, start web + Celery worker + beat (Ctrl-C stops)"
	@echo "make test          run the test suite; pytest arguments: make test ARGS='tests/tenants -x' (or PYTEST_ARGS)"
	@echo "make lint          ruff check ."
	@echo "make check-deploy  Django's deployment checks against the production settings (connects to nothing)"
	@echo "make stop          stop embedded PostgreSQL/Redis left running under .data/"
	@echo "make clean-data    stop them and delete .data/ (the demo database)"

install: $(STAMP)

# Reinstalled when pyproject.toml changes; a no-op (no pip at all) otherwise.
$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	$(VENV)/bin/python -m pip install --disable-pip-version-check -q -e '.[dev]'
	touch $@

run: install
	$(PYTHON) -m config.launcher run

test: install
	$(PYTHON) -m config.launcher test $(ARGS)

lint: install
	$(PYTHON) -m ruff check .

check-deploy: install
	DJANGO_ENV=production \
	SECRET_KEY="$${SECRET_KEY:-$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(64))')}" \
	ALLOWED_HOSTS="$${ALLOWED_HOSTS:-example.com}" \
	DATABASE_URL="$${DATABASE_URL:-postgres://nobody@127.0.0.1:9/none}" \
	CELERY_BROKER_URL="$${CELERY_BROKER_URL:-redis://127.0.0.1:9/0}" \
	$(PYTHON) manage.py check --deploy --fail-level WARNING

stop:
	$(PYTHON) -m config.launcher stop

clean-data: stop
	rm -rf .data
