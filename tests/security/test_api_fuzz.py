"""Issue #9, item 10: requests generated from the OpenAPI document by Schemathesis,
sent to a real server (uvicorn on 127.0.0.1, fresh SQLite or the test PostgreSQL,
the demo directory, API keys made for the run).

- Fuzzing: valid and invalid requests for every operation; none may get a 5xx.
- The document is no looser than validation: requests it allows get no 422 (nor
  400, for a header such as `Idempotency-Key`), once
  the values no JSON Schema can pin down (a deliverable email domain, the French
  numbering plan, a SIRET's check digit) are the document's own examples.

Generation is derandomized (the same requests on every run) and bounded by
`max_examples`; no shrinking, no example database, no deadline.
"""

from __future__ import annotations

import collections
import itertools
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import Case, GenerationMode

from tests import seed
from tests.support import RunningServer, create_api_key, data_url, load_demo, make_settings, running_server

# Targets of the demo directory (examples/data) that accept requests.
DEMO_TARGETS = {
    "offer_id": "LBA-2026-01007",
    "siret": "90933327100015",
    "formation_id": "004111P011010530070001510105300700015-69383#L01",
}
# Per operation and generation mode: 4 operations x 2 modes x 275 = 2,200 requests.
FUZZ_EXAMPLES = 275
MIN_FUZZ_REQUESTS = 2_000
NO_422_EXAMPLES = 150
UNIQUE = itertools.count()  # suffixes for emails and idempotency keys


@dataclass
class Api:
    server: RunningServer
    schema: Any
    keys: dict[str, str]
    session: requests.Session = field(default_factory=requests.Session)

    def key_for(self, path: str) -> str:
        return self.keys["operator" if path.endswith("/bounces") else "partner"]

    def call(self, case: Case[Any]) -> schemathesis.Response:
        # The key of the run, whatever the case carries (a generated one is a 401).
        headers = {"Authorization": f"Bearer {self.key_for(case.operation.path)}"}
        response: schemathesis.Response = case.call(
            base_url=self.server.url, session=self.session, headers=headers, timeout=30
        )
        return response


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    config = make_settings(
        tmp,
        RATE_LIMIT="1000000/minute",
        API_KEY_RATE_LIMIT="1000000/minute",
        OFFER_MAX_APPLICATIONS="1000000",
        CALLER_APPLICATIONS_PER_COMPANY_PER_DAY="1000000",
        LOG_LEVEL="CRITICAL",
    )
    load_demo(config)
    keys = {
        "partner": create_api_key(config, "fuzz"),
        "operator": create_api_key(config, "fuzz-ops", role="operator"),
    }
    with running_server(config) as server:
        schema = schemathesis.openapi.from_url(f"{server.url}/api/v1/openapi.json", timeout=10)
        api = Api(server, schema, keys)
        try:
            yield api
        finally:
            api.session.close()


def operations(api: Api) -> list[Any]:
    return [result.ok() for result in api.schema.get_all_operations()]


RUN = settings(
    max_examples=100,
    deadline=None,
    database=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


# About 3 minutes on a quiet 2-core machine; up to 10 when the machine is shared.
@pytest.mark.timeout(900)
def test_generated_requests_never_get_a_5xx(api: Api) -> None:
    statuses: collections.Counter[int] = collections.Counter()
    server_errors: list[str] = []
    started = time.monotonic()
    for operation in operations(api):
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(api, operation, mode, statuses, server_errors)
    total = sum(statuses.values())
    print(
        f"\nschemathesis: {total} requests in {time.monotonic() - started:.0f} s, "
        f"{sum(n for s, n in statuses.items() if s >= 500)} x 5xx; statuses {dict(sorted(statuses.items()))}",
        file=sys.stderr,
    )
    assert server_errors == []
    assert total >= MIN_FUZZ_REQUESTS


def _fuzz(
    api: Api,
    operation: Any,
    mode: GenerationMode,
    statuses: collections.Counter[int],
    server_errors: list[str],
) -> None:
    @settings(RUN, max_examples=FUZZ_EXAMPLES)
    @given(case=operation.as_strategy(generation_mode=mode))
    def send(case: Case[Any]) -> None:
        # Half of the valid requests aim at real targets, to reach quotas, storage
        # and email rendering.
        if mode is GenerationMode.POSITIVE and isinstance(case.body, dict) and hash(str(case.body)) % 2:
            _aim_at_demo_targets(case.body)
        response = api.call(case)
        statuses[response.status_code] += 1
        if response.status_code >= 500:
            server_errors.append(f"{case.operation.label}: {case.as_curl_command()}")

    send()


def _aim_at_demo_targets(body: dict[str, Any]) -> None:
    for name in DEMO_TARGETS:
        if name in body:
            body[name] = DEMO_TARGETS[name]


@pytest.mark.timeout(600)
def test_requests_the_document_allows_are_not_refused(api: Api) -> None:
    refused: list[tuple[str, Any, Any]] = []
    statuses: collections.Counter[int] = collections.Counter()
    for operation in operations(api):
        if operation.method.upper() == "POST" and not operation.path.endswith("/bounces"):
            _send_allowed(api, operation, statuses, refused)
    print(f"\nno-422 check: statuses {dict(sorted(statuses.items()))}", file=sys.stderr)
    assert refused[:3] == []
    assert sum(statuses.values()) >= 2 * NO_422_EXAMPLES


def _send_allowed(
    api: Api, operation: Any, statuses: collections.Counter[int], refused: list[tuple[str, Any, Any]]
) -> None:
    body_schema = operation.definition.raw["requestBody"]["content"]["application/json"]["schema"]
    examples = {
        name: prop["examples"][0] for name, prop in body_schema["properties"].items() if "examples" in prop
    }

    @settings(RUN, max_examples=NO_422_EXAMPLES)
    @given(case=operation.as_strategy().filter(lambda case: case.media_type == "application/json"))
    def send(case: Case[Any]) -> None:
        assert isinstance(case.body, dict)
        # What no JSON Schema says: the email's domain takes mail (each case its
        # own address, clear of the per-person quotas), the number is French, the
        # SIRET's key is right, the CV is a PDF (and the target exists, to go further).
        number = next(UNIQUE)
        local, domain = examples["email"].split("@")
        case.body["email"] = f"{local}+{number}@{domain}"
        case.body["phone"] = examples["phone"]
        if "cv" in case.body:
            case.body["cv"] = data_url(seed.PDF)
        _aim_at_demo_targets(case.body)
        if case.headers and "Idempotency-Key" in case.headers:
            # A key used again for another body is refused: make each one new.
            case.headers["Idempotency-Key"] = f"{case.headers['Idempotency-Key'][:240]}-{number}"
        response = api.call(case)
        statuses[response.status_code] += 1
        if response.status_code in (400, 422):
            refused.append((operation.label, case.body, response.json().get("errors")))

    send()
