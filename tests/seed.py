"""Directory rows and API keys for tests, written straight into the app's database."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.testclient import TestClient

from widget_server import callers, tables

T = TypeVar("T")

NOW = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)
OFFER_ID = "OFF-001"
SIRET = "73282932000074"  # valid Luhn key
CFA_SIRET = "44306184100047"
FORMATION_ID = "CME-0001"

# A minimal valid PDF (one blank page, as pypdf writes it): CVs are parsed.
PDF = (
    b"%PDF-1.3\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<\n/Producer (pypdf)\n>>\nendobj\n2 0 obj\n<<\n/Type /Pages\n"
    b"/Count 1\n/Kids [ 4 0 R ]\n>>\nendobj\n3 0 obj\n<<\n/Type /Catalog\n/Pages 2 0 R\n>>\nendobj\n"
    b"4 0 obj\n<<\n/Type /Page\n/Resources <<\n>>\n/MediaBox [ 0.0 0.0 200 200 ]\n/Parent 2 0 R\n>>\n"
    b"endobj\nxref\n0 5\n0000000000 65535 f \n0000000015 00000 n \n0000000054 00000 n \n"
    b"0000000113 00000 n \n0000000162 00000 n \ntrailer\n<<\n/Size 5\n/Root 3 0 R\n/Info 1 0 R\n>>\n"
    b"startxref\n256\n%%EOF\n"
)


def app(client: TestClient) -> Starlette:
    """The app under test. TestClient types it as any ASGI callable; ours is
    always a Starlette application."""
    assert isinstance(client.app, Starlette)
    return client.app


def state(client: TestClient) -> State:
    """The app's state: `database`, `settings`, `assets`, …"""
    return app(client).state


def run(client: TestClient, coro_fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Runs `coro_fn(*args)` on the app's event loop (the client must be started)."""
    assert client.portal is not None, "use the TestClient as a context manager"
    return client.portal.call(coro_fn, *args)


def insert(client: TestClient, table: Any, **values: Any) -> None:
    async def go() -> None:
        await state(client).database.execute(table.insert().values(**values))

    run(client, go)


def offer(client: TestClient, offer_id: str = OFFER_ID, **values: Any) -> str:
    row = {
        "offer_id": offer_id,
        "title": "Vendeur·se en boulangerie",
        "siret": SIRET,
        "company_name": "Boulangerie Martin",
        "address": "3 rue du Four",
        "city": "Lyon",
        "postcode": "69003",
        "contact_email": "recrutement@boulangerie.example",
        "status": "active",
        "posted_on": dt.date(2026, 10, 1),
        "expires_on": None,
        "application_count": 0,
        "updated_at": NOW,
        **values,
    }
    insert(client, tables.offers, **row)
    return offer_id


def company(client: TestClient, siret: str = SIRET, **values: Any) -> str:
    row = {
        "siret": siret,
        "name": "Garage Durand",
        "address": "12 avenue Jean Jaurès",
        "city": "Nantes",
        "postcode": "44000",
        "naf_code": "4520A",
        "hiring_score": 0.8,
        "contact_email": "contact@garage-durand.example",
        "updated_at": NOW,
        **values,
    }
    insert(client, tables.companies, **row)
    return siret


def formation(client: TestClient, cle: str = FORMATION_ID, **values: Any) -> str:
    row = {
        "cle_ministere_educatif": cle,
        "title": "BTS Management commercial opérationnel",
        "city": "Bordeaux",
        "postcode": "33000",
        "address": "1 cours de la Marne",
        "cfa_siret": CFA_SIRET,
        "cfa_name": "CFA du Commerce de Bordeaux",
        "cfa_address": "1 cours de la Marne, 33000 Bordeaux",
        "cfa_phone": "+33199001234",
        "contact_email": "rdv@cfa-commerce.example",
        "updated_at": NOW,
        **values,
    }
    insert(client, tables.formations, **row)
    return cle


def api_key(client: TestClient, caller: str = "mon-site", role: str = "partner") -> str:
    return str(run(client, callers.create_key, state(client).database, caller, role))


def webhook_key(client: TestClient, url: str, caller: str = "mon-site") -> tuple[str, str]:
    """A partner key with a webhook to `url`: (key, whsec_ secret)."""
    database = state(client).database
    made = run(client, lambda: callers.create(database, caller, "partner", webhook_url=url))
    assert made.webhook_secret is not None
    return made.key, made.webhook_secret


def fetch_all(client: TestClient, query: Any) -> list[dict[str, Any]]:
    async def go() -> list[dict[str, Any]]:
        rows = await state(client).database.fetch_all(query)
        return [dict(r._mapping) for r in rows]

    return list(run(client, go))
