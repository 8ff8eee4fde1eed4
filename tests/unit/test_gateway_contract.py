"""The gateway's HTTP contract, property-based: every operation of its OpenAPI document, with generated valid and
invalid input (schemathesis's strategies, run by hypothesis), answers without a server error."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from consumer.gateway.lead import LeadScorer
from tests.unit.test_gateway import harness_for, lead_scorer, no_gateway_environment

__all__ = ["lead_scorer", "no_gateway_environment"]  # fixtures this module uses, found by pytest through its names


@pytest.fixture(scope="module")
def contract_schema(tmp_path_factory: pytest.TempPathFactory, lead_scorer: LeadScorer) -> Iterator[Any]:
    with harness_for(tmp_path_factory.mktemp("contract"), lead_scorer) as harness:
        yield schemathesis.openapi.from_asgi("/openapi.json", harness.client.app)


OPERATIONS = ["POST /upload_features", "GET /check_task", "GET /get_result", "POST /api/v1/predict"]


def test_the_contract_covers_every_operation(contract_schema: Any) -> None:
    labels = sorted(result.ok().label for result in contract_schema.get_all_operations())
    assert labels == sorted(OPERATIONS)


@pytest.mark.parametrize("mode", list(GenerationMode))
@pytest.mark.parametrize("label", OPERATIONS)
def test_no_generated_request_makes_a_server_error(contract_schema: Any, label: str, mode: GenerationMode) -> None:
    operation = contract_schema.find_operation_by_label(label)
    answered: list[int] = []

    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis.settings(
        max_examples=30,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    def call(case: Any) -> None:
        response = case.call()
        answered.append(response.status_code)
        case.validate_response(response, checks=[not_a_server_error])

    call()
    assert answered, f"no request was generated for {label}"
    assert max(answered) < 500, sorted(set(answered))
