"""OpenAPI 3.1 description of the console's ``/api/v1`` (served at ``/api/v1/openapi.json``)."""

from __future__ import annotations

from .review import ALERT_ACTIONS, ALERT_STATES, REVIEW_ACTIONS, ROLES, STATES
from .service import CATEGORIES

__all__ = ["OPENAPI"]

_ERR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_P = {n: {"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in ("entity", "sha256")}
_P["month"] = {"name": "month", "in": "path", "required": True,
               "schema": {"type": "string", "pattern": r"^\d{4}-\d{2}$"}}
_Q = {n: {"name": n, "in": "query", "schema": {"type": "string"}} for n in
      ("severity", "state", "province", "municipality", "month", "entity")}
_COMMON = {"401": {"description": "not logged in (no session cookie or bearer token)", **_ERR},
           "404": {"description": "no such thing, or outside the caller's region (the two are not told apart)",
                   **_ERR}}
_WRITE = {**_COMMON, "400": {"description": "malformed request, file type or size refused, reason missing", **_ERR},
          "403": {"description": "the role may not do this, or the CSRF check failed (cookie sessions)", **_ERR},
          "409": {"description": "not possible in the month's current state", **_ERR},
          "413": {"description": "body larger than the limit", **_ERR}}
_MONTH = ["entity", "month"]


def _op(summary: str, params=(), responses=None, body=None, description: str = "") -> dict:
    op = {"summary": summary, "parameters": [_P.get(p) or _Q[p] for p in params],
          "responses": {"200": {"description": "OK"}, **(responses or _COMMON)}}
    if description:
        op["description"] = description
    if body is not None:
        op["requestBody"] = {"required": True, "content": body}
    return op


_REASON = {"application/json": {"schema": {"type": "object", "properties": {"reason": {"type": "string"}}}}}
OPENAPI = {
    "openapi": "3.1.0",
    "info": {"title": "CEMS review console API", "version": "1", "description": (
        "The monthly evidence deposit and the municipal-provincial-national review, on the archive the pipeline "
        "writes. Same roles and regional scope as the pages: a caller sees only the entities of its region, and "
        "anything else answers 404. Authenticate with the console's session cookie (state changes then need the "
        "X-CSRF-Token header) or with `Authorization: Bearer <token>` (`cems console user token NAME`).")},
    "components": {
        "securitySchemes": {"cookie": {"type": "apiKey", "in": "cookie", "name": "cems_session"},
                            "bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {"type": "object", "properties": {"error": {"type": "string"}}},
            "Role": {"type": "string", "enum": list(ROLES)},
            "ReviewState": {"type": "string", "enum": list(STATES)},
            "AlertState": {"type": "string", "enum": list(ALERT_STATES)},
        }},
    "security": [{"cookie": []}, {"bearer": []}],
    "paths": {
        "/api/v1/me": {"get": _op("The caller's account: user name, role, entity or region")},
        "/api/v1/entities": {"get": _op("Entities in the caller's scope, with time zone and region")},
        "/api/v1/entities/{entity}/months": {"get": _op(
            "The entity's months: review state, deadline (40 days after month end) and its status, open alerts",
            ["entity"])},
        "/api/v1/entities/{entity}/months/{month}": {"get": _op(
            "One plant-month: archived figures per source, hourly CO2 and status, alerts with their state, the "
            "deposited report's parameters, evidence, submissions, review history, and what the caller may do",
            _MONTH)},
        "/api/v1/entities/{entity}/months/{month}/evidence/{sha256}": {"get": _op(
            "An evidence file by its sha256 (attachment)", [*_MONTH, "sha256"])},
        "/api/v1/entities/{entity}/months/{month}/evidence": {"post": _op(
            "Deposit an evidence file (plant): stored once under its sha256, never changed", _MONTH, _WRITE,
            {"multipart/form-data": {"schema": {"type": "object", "required": ["file", "category"], "properties": {
                "file": {"type": "string", "format": "binary", "description": (
                    "PDF, PNG, JPEG, CSV, JSON or XLSX, checked by content; at most 10 MiB. The accounting "
                    "report is the pipeline's CSV or JSON import format.")},
                "category": {"type": "string", "enum": list(CATEGORIES)}}}}})},
        "/api/v1/entities/{entity}/months/{month}/submit": {"post": _op(
            "Submit the month (plant): freezes the report and the chosen evidence as the next version; a "
            "correction needs a reason", _MONTH, _WRITE,
            {"application/json": {"schema": {"type": "object", "properties": {
                "reason": {"type": "string"}, "evidence": {"type": "array", "items": {"type": "string"},
                                                           "description": "sha256 of the files (default all)"}}}}})},
        "/api/v1/entities/{entity}/months/{month}/review": {"post": _op(
            "A review action by the reviewer of the month's current level", _MONTH, _WRITE,
            {"application/json": {"schema": {"type": "object", "required": ["action"], "properties": {
                "action": {"type": "string", "enum": [a for a in REVIEW_ACTIONS if a != "submit"]},
                "reason": {"type": "string", "description": "needed to escalate or return"}}}}})},
        "/api/v1/alerts": {"get": _op("The alert queue in the caller's scope, worst first, with filters",
                                      ["severity", "state", "province", "municipality", "month", "entity"])},
        "/api/v1/alerts/action": {"post": _op(
            "Acknowledge an alert, dismiss it with a reason, or make it a finding on the month's review", (),
            _WRITE, {"application/json": {"schema": {"type": "object", "required": ["alert_id", "action"],
                                                     "properties": {"alert_id": {"type": "string"},
                                                                    "action": {"type": "string",
                                                                               "enum": list(ALERT_ACTIONS)},
                                                                    "reason": {"type": "string"}}}}})},
        "/api/v1/overview": {"get": _op(
            "Per region: entities on time, late, missing and due for the month, review states, open alerts",
            ["month"])},
        "/api/v1/openapi.json": {"get": {"summary": "This description", "security": [],
                                         "responses": {"200": {"description": "OK"}}}},
    },
}
