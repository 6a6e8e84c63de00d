# The two commands of the README: `make demo` (main job, simulator, no services) and
# `make test` (installs what the suite needs, then runs every tier).
.PHONY: demo test test-unit test-sim test-lab test-mutants lint bench setup setup-services clean

setup:
	./scripts/setup.sh

setup-services:
	./scripts/setup.sh --services

demo: setup
	./scripts/demo.sh

test: setup-services
	DRENGINE_TEST_REQUIRE_SERVICES=1 .venv/bin/python -m pytest -q -m "unit or sim or lab or mutants" tests

test-unit: setup
	.venv/bin/python -m pytest -q -m unit tests

test-sim: setup
	.venv/bin/python -m pytest -q -m sim tests

test-mutants: setup
	.venv/bin/python tests/mutants/mutate.py

test-lab: setup-services
	DRENGINE_TEST_REQUIRE_SERVICES=1 .venv/bin/python -m pytest -q -m lab tests

lint: setup
	.venv/bin/ruff check drengine tests bench
	.venv/bin/mypy drengine tests

bench: setup-services
	.venv/bin/python bench/run_all.py

clean:
	rm -rf runs .pytest_cache
