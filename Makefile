# make run   — 在示例活动上运行主任务 run the main job on the sample campaign (no credentials needed)
# make test  — 运行全部测试 run the whole test suite
# Both create .venv and install what they need on first use.

BIN := .venv/bin

.PHONY: run test lint format bench install install-dev clean

install:
	@scripts/bootstrap.sh

install-dev:
	@scripts/bootstrap.sh dev

run: install
	$(BIN)/broadcaster channels
	$(BIN)/broadcaster simulate --days 7
	$(BIN)/broadcaster run

test: install-dev
	$(BIN)/python -m pytest

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install-dev
	$(BIN)/python -m bench

clean:
	rm -rf .venv build *.egg-info var
