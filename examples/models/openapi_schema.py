"""Writes each model's .cog/openapi_schema.json, the file `cog build` puts in a model image.

The Cog server (coglet) reads .cog/openapi_schema.json from its working directory: it
validates inputs against it (422 on a bad input) and serves it at /openapi.json. Without it
every input is accepted and /openapi.json answers 503. `cog build` writes the file with a
static parser in the Go CLI, which is not on PyPI; this script builds the same document from
the Cog SDK's own inspection of the predictor, for the input and output types these models use.

Usage (in the venv of hack/python.sh):
    python openapi_schema.py [--check] [MODEL_DIR ...]   (default: every model beside this file)
--check writes nothing and exits 1 when a committed schema differs from the generated one
(compared as JSON: the committed files are laid out by the repository's formatter).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import yaml


def _title(name: str) -> str:
    return " ".join(part.capitalize() for part in name.split("_"))


def _number(value: Any, json_type: dict[str, Any]) -> Any:
    if json_type.get("type") == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def predictor_info(model_dir: Path) -> Any:
    config = yaml.safe_load((model_dir / "cog.yaml").read_text())
    module_file, _, class_name = str(config["predict"]).partition(":")
    module_name = module_file.removesuffix(".py")
    cwd = os.getcwd()
    sys.path.insert(0, str(model_dir))
    os.chdir(model_dir)
    try:
        from cog import _inspector

        sys.modules.pop(module_name, None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _inspector.create_predictor(module_name, class_name)
    finally:
        os.chdir(cwd)
        sys.path.remove(str(model_dir))
        sys.modules.pop(module_name, None)
        importlib.invalidate_caches()


def input_schema(info: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    from cog._adt import Repetition

    properties: dict[str, Any] = {}
    required: list[str] = []
    enums: dict[str, Any] = {}
    for name, field in sorted(info.inputs.items(), key=lambda item: item[1].order):
        json_type = field.type.json_type()
        prop: dict[str, Any] = {"x-order": field.order}
        if field.choices:
            enums[name] = {
                "title": name,
                "description": "An enumeration.",
                "enum": list(field.choices),
                "type": json_type.get("type", "string"),
            }
            prop["allOf"] = [{"$ref": f"#/components/schemas/{name}"}]
        else:
            prop["title"] = _title(name)
            prop.update(json_type)
        nullable = field.type.repetition in (Repetition.OPTIONAL, Repetition.OPTIONAL_REPEATED)
        has_default = field.default is not None or nullable
        if not has_default:
            required.append(name)
        else:
            prop["default"] = field.default
        if nullable:
            prop["nullable"] = True
        if field.description is not None:
            prop["description"] = field.description
        if field.ge is not None:
            prop["minimum"] = _number(field.ge, json_type)
        if field.le is not None:
            prop["maximum"] = _number(field.le, json_type)
        if field.min_length is not None:
            prop["minLength"] = field.min_length
        if field.max_length is not None:
            prop["maxLength"] = field.max_length
        if field.regex is not None:
            prop["pattern"] = field.regex
        if field.deprecated:
            prop["deprecated"] = True
        properties[name] = prop
    schema: dict[str, Any] = {"title": "Input", "type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema, enums


def openapi(info: Any) -> dict[str, Any]:
    inputs, enums = input_schema(info)
    ok = {"description": "Successful Response", "content": {"application/json": {"schema": {}}}}
    invalid = {
        "description": "Validation Error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}},
    }
    return {
        "openapi": "3.0.2",
        "info": {"title": "Cog", "version": "0.1.0"},
        "paths": {
            "/": {"get": {"summary": "Root", "operationId": "root__get", "responses": {"200": ok}}},
            "/health-check": {
                "get": {"summary": "Healthcheck", "operationId": "healthcheck_health_check_get", "responses": {"200": ok}}
            },
            "/predictions": {
                "post": {
                    "summary": "Predict",
                    "description": "Run a single prediction on the model",
                    "operationId": "predict_predictions_post",
                    "requestBody": {
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictionRequest"}}}
                    },
                    "responses": {
                        "200": {
                            "description": "Successful Response",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/PredictionResponse"}}
                            },
                        },
                        "422": invalid,
                    },
                }
            },
            "/predictions/{prediction_id}/cancel": {
                "post": {
                    "summary": "Cancel",
                    "operationId": "cancel_predictions__prediction_id__cancel_post",
                    "parameters": [
                        {
                            "required": True,
                            "schema": {"title": "Prediction Id", "type": "string"},
                            "name": "prediction_id",
                            "in": "path",
                        }
                    ],
                    "responses": {"200": ok, "422": invalid},
                }
            },
            "/shutdown": {"post": {"summary": "Start Shutdown", "operationId": "start_shutdown_shutdown_post", "responses": {"200": ok}}},
        },
        "components": {
            "schemas": {
                "Input": inputs,
                "Output": info.output.json_type(),
                **enums,
                "PredictionRequest": {
                    "title": "PredictionRequest",
                    "type": "object",
                    "properties": {
                        "id": {"title": "Id", "type": "string"},
                        "input": {"$ref": "#/components/schemas/Input"},
                    },
                },
                "PredictionResponse": {
                    "title": "PredictionResponse",
                    "type": "object",
                    "properties": {
                        "input": {"$ref": "#/components/schemas/Input"},
                        "output": {"$ref": "#/components/schemas/Output"},
                        "id": {"title": "Id", "type": "string"},
                        "version": {"title": "Version", "type": "string"},
                        "created_at": {"title": "Created At", "type": "string", "format": "date-time"},
                        "started_at": {"title": "Started At", "type": "string", "format": "date-time"},
                        "completed_at": {"title": "Completed At", "type": "string", "format": "date-time"},
                        "status": {"title": "Status", "type": "string"},
                        "error": {"title": "Error", "type": "string"},
                        "logs": {"title": "Logs", "type": "string"},
                        "metrics": {"title": "Metrics", "type": "object"},
                    },
                },
                "Status": {
                    "title": "Status",
                    "description": "An enumeration.",
                    "enum": ["starting", "processing", "succeeded", "canceled", "failed"],
                    "type": "string",
                },
                "HTTPValidationError": {
                    "title": "HTTPValidationError",
                    "type": "object",
                    "properties": {
                        "detail": {
                            "title": "Detail",
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/ValidationError"},
                        }
                    },
                },
                "ValidationError": {
                    "title": "ValidationError",
                    "required": ["loc", "msg", "type"],
                    "type": "object",
                    "properties": {
                        "loc": {
                            "title": "Location",
                            "type": "array",
                            "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                        },
                        "msg": {"title": "Message", "type": "string"},
                        "type": {"title": "Error Type", "type": "string"},
                    },
                },
            }
        },
    }


def main(argv: list[str]) -> int:
    check = "--check" in argv
    dirs = [Path(a).resolve() for a in argv if a != "--check"]
    if not dirs:
        here = Path(__file__).resolve().parent
        dirs = sorted(p.parent for p in here.glob("*/cog.yaml"))
    stale = []
    for model_dir in dirs:
        schema = openapi(predictor_info(model_dir))
        target = model_dir / ".cog" / "openapi_schema.json"
        if check:
            if not target.exists() or json.loads(target.read_text()) != schema:
                stale.append(str(target))
            continue
        target.parent.mkdir(exist_ok=True)
        target.write_text(json.dumps(schema, indent=2) + "\n")
        print(f"wrote {target}", file=sys.stderr)
    if stale:
        print("out of date (regenerate with examples/models/openapi_schema.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
