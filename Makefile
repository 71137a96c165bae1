# make run   — 在示例活动上运行主任务 run the main job on the sample campaign (no credentials needed)
# make test  — 运行全部测试 run the whole test suite
# Both create .venv and install what they need on first use.

VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format bench clean

$(STAMP): pyproject.toml scripts/bootstrap.sh
	@scripts/bootstrap.sh

run: $(STAMP)
	-$(BIN)/broadcaster validate
	$(BIN)/broadcaster plan --limit 40

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info var
