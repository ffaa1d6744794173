"""The OpenAPI 3.1 document, generated from the operations the API serves and the pydantic
models their handlers validate and serialise with (OpenAPI 3.1 schemas are JSON Schema
2020-12, which is what pydantic writes)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from bulkwatch import __version__
from bulkwatch.daemon.webui.models import Problem

__all__ = ["Operation", "openapi_document"]

_REF = "#/components/schemas/{model}"
_PROBLEM_DETAIL = {
    400: "A query parameter or the body is invalid; `invalid-params` names each",
    401: "No bearer token, or not the configured one",
    403: "Writes are turned off: no `server.api_token` is configured",
    404: "No such store, or no such path",
}


@dataclass(frozen=True, slots=True)
class Operation:
    """One API operation: what it takes, what it answers, and who may call it."""

    method: Literal["GET", "POST"]
    path: str  # aiohttp's form, which is OpenAPI's: /api/v1/stores/{name}
    operation_id: str
    summary: str
    response: type[BaseModel]
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    errors: tuple[int, ...] = (400,)
    auth: bool = False


def _no_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent rather than null: drop the null branch of an Optional."""
    branches = schema.get("anyOf")
    if branches is None:
        return schema
    kept = [b for b in branches if b.get("type") != "null"]
    rest = {k: v for k, v in schema.items() if k != "anyOf"}
    return {**rest, **kept[0]} if len(kept) == 1 else {**rest, "anyOf": kept}


def _parameters(op: Operation, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", op.path)
    ]
    if op.query is not None:
        model = schemas[op.query.__name__]
        required = set(model.get("required", ()))
        for name, schema in model["properties"].items():
            clean = _no_null(schema)
            param = {"name": name, "in": "query", "required": name in required, "schema": clean}
            if "description" in clean:
                param["description"] = clean["description"]
            params.append(param)
    return params


def _operation(op: Operation, schemas: dict[str, Any]) -> dict[str, Any]:
    problem = {"application/problem+json": {"schema": {"$ref": _REF.format(model="Problem")}}}
    responses: dict[str, Any] = {
        "200": {
            "description": "OK",
            "content": {
                "application/json": {"schema": {"$ref": _REF.format(model=op.response.__name__)}}
            },
        }
    }
    for status in op.errors:
        responses[str(status)] = {"description": _PROBLEM_DETAIL[status], "content": problem}
    out: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "parameters": _parameters(op, schemas),
        "responses": responses,
    }
    if op.body is not None:
        ref = {"$ref": _REF.format(model=op.body.__name__)}
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref}}}
    if op.auth:
        out["security"] = [{"bearer": []}]
    return out


def openapi_document(operations: Sequence[Operation]) -> dict[str, Any]:
    """The whole document for `operations`, every model in `components.schemas`."""
    outputs = {op.response for op in operations} | {Problem}
    inputs = {m for op in operations for m in (op.query, op.body) if m is not None}
    pairs: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
        *((m, "serialization") for m in sorted(outputs, key=lambda m: m.__name__)),
        *((m, "validation") for m in sorted(inputs, key=lambda m: m.__name__)),
    ]
    _, defs = models_json_schema(pairs, ref_template=_REF)
    schemas: dict[str, Any] = defs.get("$defs", {})
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, schemas)
    # Query models are parameters, not bodies: their schemas need not be components.
    for model in {op.query for op in operations if op.query is not None}:
        schemas.pop(model.__name__, None)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "bulkwatch",
            "version": __version__,
            "description": "Stores, tasks, events and deliveries of a running bulkwatch. "
            "Read-only, except re-queueing dead deliveries, which needs the bearer token "
            "configured as `server.api_token`.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
