# Two commands a new machine needs: `make demo` and `make test`. Everything else builds on the same venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EVENTS ?= 20000
# The demo's local broker: tansu (no Java) or kafka (Apache Kafka from Maven Central; needs java and mvn).
BROKER ?= tansu

.PHONY: demo demo-lifecycle stack test tools test-unit test-integration test-faults test-chaos test-security lint format train bench bench-quick bench-switch bench-instructions test-bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The Helm chart's offline checks (tests/deploy): helm, KEDA's ScaledObject and TriggerAuthentication CRDs and the
# Prometheus Operator's ServiceMonitor CRD, all from the Go module proxy, into .tools/ (a version change installs
# again).
GO ?= go
HELM_VERSION := v3.21.4
KEDA_VERSION := v2.20.2
PROMETHEUS_OPERATOR_VERSION := v0.85.0
TOOLS := .tools
TOOLS_STAMP := $(TOOLS)/.installed-helm-$(HELM_VERSION)-keda-$(KEDA_VERSION)-operator-$(PROMETHEUS_OPERATOR_VERSION)
KEDA_MODULE := github.com/kedacore/keda/v2@$(KEDA_VERSION)
OPERATOR_MODULE := github.com/prometheus-operator/prometheus-operator@$(PROMETHEUS_OPERATOR_VERSION)

$(TOOLS_STAMP):
	mkdir -p $(TOOLS)/bin $(TOOLS)/crds
	GOBIN=$(abspath $(TOOLS)/bin) GOTOOLCHAIN=local $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	GOTOOLCHAIN=local $(GO) mod download $(KEDA_MODULE) $(OPERATOR_MODULE)
	modules="$$($(GO) env GOMODCACHE)" && install -m 644 \
		"$$modules/$(KEDA_MODULE)/config/crd/bases/keda.sh_scaledobjects.yaml" \
		"$$modules/$(KEDA_MODULE)/config/crd/bases/keda.sh_triggerauthentications.yaml" \
		"$$modules/$(OPERATOR_MODULE)/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" \
		$(TOOLS)/crds/
	touch $@

demo: $(STAMP)
	$(VENV)/bin/crm-producer demo --events $(EVENTS) --broker $(BROKER)

# The feedback loop: scorer, the world's outcomes and crm-scorer monitor, with live quality figures
# (docs/outcomes.md). POLICY_CHANGE=bank_c@5000 makes bank_c tighten its policy from event 5,000 on.
OUTCOME_EVENTS ?= 10000
demo-outcomes: $(STAMP)
	$(VENV)/bin/crm-producer outcomes-demo --events $(OUTCOME_EVENTS) --broker $(BROKER) \
		$(if $(POLICY_CHANGE),--policy-change $(POLICY_CHANGE))

# The model loop (docs/model-lifecycle.md): bank_c tightens its policy, the monitor's trigger fires, bank_c is
# retrained from the monitor's capture and activated in the running scorer without a restart; one timeline, and
# bank_c's realised AUC and ECE in lifecycle-demo.png.
demo-lifecycle: $(STAMP)
	$(VENV)/bin/crm-producer lifecycle-demo --broker $(BROKER)

# The docker-compose topology as local processes (Apache Kafka, Apicurio Registry, two scorers, the gateway, the
# producer, the world's outcomes, the monitor, Prometheus) until Ctrl-C; needs java 17+, java 21+ for the registry,
# and mvn.
stack: $(STAMP)
	$(VENV)/bin/crm-producer stack

# Everything but the one-million-event soak, the three-broker cluster scenarios and the second guarantee of the
# scenarios marked make_test_guarantee (all three run in test-faults) and the benchmarks' smoke runs (test-bench),
# on a local Apache Kafka (Tansu without java/mvn). Prints its 25 slowest tests: keep the whole under 15 minutes.
test: $(STAMP) $(TOOLS_STAMP)
	$(PY) -m pytest -q --durations=25 -m "not soak and not cluster and not matrix and not unsettled and not bench"

# The benchmark commands' smoke runs (crm-scorer bench --quick and --switch --quick): about 90 s, outside make
# test's 15-minute budget.
test-bench: $(STAMP)
	$(PY) -m pytest -q -m bench tests/integration

test-unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

test-integration: $(STAMP)
	$(PY) -m pytest -q tests/integration

# The whole fault matrix (every scenario in both guarantees, the cluster and the soak), with its table of
# produced / scored / dead-lettered / duplicates / lost.
test-faults: $(STAMP)
	$(PY) -m pytest -q -m "faults or matrix" -s tests/integration

# The cluster chaos run alone (CRM_CHAOS_RUNS runs, default 30, about half an hour): leader kill, rolling restart
# and a frozen broker on three brokers, both guarantees, with its table of runs, hangs, losses and watchdog firings.
test-chaos: $(STAMP)
	$(PY) -m pytest -q -m chaos -s tests/integration/faults/test_chaos.py

# The security suite alone: a secured Apache Kafka (SASL_SSL, SCRAM-SHA-512, ACLs) and its table of refusals.
test-security: $(STAMP)
	CRM_SECURITY_FULL=1 $(PY) -m pytest -q -s tests/integration/security

tools: $(TOOLS_STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

train: $(STAMP)
	$(VENV)/bin/crm-train --count 120000 --seed 7 --out models/artifacts

bench: $(STAMP)
	$(VENV)/bin/crm-scorer bench --json bench.json

# The engine's instructions per event and per stage under valgrind's callgrind: the same figure whatever else the
# machine runs (a few minutes; needs valgrind).
bench-instructions: $(STAMP)
	$(VENV)/bin/crm-scorer bench --instructions --json bench-instructions.json

bench-quick: $(STAMP)
	$(VENV)/bin/crm-scorer bench --quick

# An activation and a rollback under steady load (half one worker's rate), both guarantees (docs/model-lifecycle.md).
bench-switch: $(STAMP)
	$(VENV)/bin/crm-scorer bench --switch --json bench-switch.json

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
