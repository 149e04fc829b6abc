.PHONY: demo test lint bench
demo:   ## the README's main job
	./scripts/demo.sh
test:   ## the README's test command
	./scripts/test.sh
lint:   ## ruff + mypy
	.venv/bin/ruff check src tests bench examples
	.venv/bin/ruff format --check src tests bench examples
	.venv/bin/mypy
bench:  ## every benchmark in its default (CPU) setting
	for b in bench/*.py; do .venv/bin/python $$b || exit 1; done
