"""A scoring script for Microsoft's Azure ML inference server (azmlinfsrv) that speaks every dedicated schema.

One real deployment runs one model with one schema; this script plays several deployments at once and picks
the schema from the ``azureml-model-deployment`` header (default ``gpt2``). It checks the request strictly, as a
model container would, and answers a body that does not fit with 424, the status Azure ML gives when the
container fails. The generated text is ``"score.py[<schema>]: <prompt>"``, followed by the parameters as sorted
JSON when there are some, so a test sees the prompt and the parameters arrived where the schema wants them.

Chosen prompts fail on purpose, through ``AMLResponse`` as a scoring script would:
``fail-424`` (model error), ``fail-429`` (throttled, ``Retry-After: 1``), ``fail-503`` (unavailable) and
``fail-raise`` (an exception in ``run()``, which the server turns into a 500). Error bodies carry the request id
the server saw, so a test can check the SDK reports the same one.

``GET /score`` answers this worker's statistics: how many POSTs it scored and the client ports they came from.
"""

from __future__ import annotations

import json
from typing import Any

import flask
from azureml_inference_server_http.api.aml_request import rawhttp
from azureml_inference_server_http.api.aml_response import AMLResponse

SCHEMAS = ("gpt2", "hf", "dolly", "openai", "openai-chat", "mistral-chat")
_ROLES = {"system", "user", "assistant", "tool"}

_stats: dict[str, Any] = {"posts": 0, "ports": set()}


class SchemaMismatch(Exception):
    """The request does not have the shape this deployment's model reads."""


def init() -> None:
    _stats["posts"] = 0
    _stats["ports"] = set()


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise SchemaMismatch(message)


def _one_prompt(value: Any, where: str) -> str:
    _expect(isinstance(value, list) and len(value) == 1 and isinstance(value[0], str), f"{where} must be [str]")
    return str(value[0])


def _parameters(value: Any, where: str) -> dict[str, Any]:
    _expect(isinstance(value, dict), f"{where} must be an object")
    return dict(value)


def _completion(schema: str, body: Any) -> tuple[str, dict[str, Any]]:
    _expect(isinstance(body, dict), "the body must be a JSON object")
    if schema == "gpt2":
        _expect(set(body) <= {"inputs", "parameters"} and "inputs" in body, "expected inputs (+ parameters)")
        inputs = body["inputs"]
        _expect(isinstance(inputs, dict) and set(inputs) == {"input_string"}, "inputs must be {input_string}")
        return _one_prompt(inputs["input_string"], "inputs.input_string"), _parameters(
            body.get("parameters", {}), "parameters"
        )
    if schema == "hf":
        _expect(set(body) <= {"inputs", "parameters"} and "inputs" in body, "expected inputs (+ parameters)")
        return _one_prompt(body["inputs"], "inputs"), _parameters(body.get("parameters", {}), "parameters")
    _expect("input_data" in body, "expected input_data")
    data = body["input_data"]
    _expect(isinstance(data, dict) and "input_string" in data, "input_data must hold input_string")
    if schema == "dolly":  # parameters beside input_data
        _expect(set(body) <= {"input_data", "parameters"} and set(data) == {"input_string"}, "dolly shape")
        return _one_prompt(data["input_string"], "input_data.input_string"), _parameters(
            body.get("parameters", {}), "parameters"
        )
    # openai (dedicated): parameters inside input_data
    _expect(set(body) == {"input_data"} and set(data) <= {"input_string", "parameters"}, "openai shape")
    return _one_prompt(data["input_string"], "input_data.input_string"), _parameters(
        data.get("parameters", {}), "input_data.parameters"
    )


def _chat(schema: str, body: Any) -> tuple[str, dict[str, Any]]:
    _expect(isinstance(body, dict) and set(body) == {"input_data"}, "expected {input_data}")
    data = body["input_data"]
    _expect(isinstance(data, dict) and set(data) <= {"input_string", "parameters"}, "input_data shape")
    messages = data.get("input_string")
    _expect(isinstance(messages, list) and len(messages) > 0, "input_data.input_string must be a list of messages")
    for message in messages:
        _expect(isinstance(message, dict) and message.get("role") in _ROLES, "each message needs a known role")
        _expect(isinstance(message.get("content"), str), "each message needs str content")
        if schema == "mistral-chat":
            _expect(message["role"] != "system", "mistral models reject the system role")
    users = [m["content"] for m in messages if m["role"] == "user"]
    _expect(bool(users), "no user message")
    return users[-1], _parameters(data.get("parameters", {}), "input_data.parameters")


def _text(schema: str, prompt: str, parameters: dict[str, Any]) -> str:
    text = f"score.py[{schema}]: {prompt}"
    if parameters:
        text += " " + json.dumps(parameters, sort_keys=True)
    return text


def _answer(schema: str, text: str) -> Any:
    if schema == "hf":
        return [{"0": {"generated_text": text}}]
    if schema == "dolly":
        return [text]
    if schema in ("openai-chat", "mistral-chat"):
        return {"output": text}
    return [{"0": text}]  # gpt2, openai


def _error(status: int, code: str, message: str, request_id: str, headers: dict[str, str] | None = None) -> Any:
    body = {"error": {"code": code, "message": message}, "request_id": request_id}
    return AMLResponse(body, status, headers or {}, json_str=True)


@rawhttp
def run(request: Any) -> Any:
    if request.method == "GET":
        return {"posts": _stats["posts"], "distinct_ports": len(_stats["ports"])}
    _stats["posts"] += 1
    _stats["ports"].add(request.environ.get("REMOTE_PORT"))
    request_id = str(flask.g.request_id)  # the id the server echoes in x-request-id (made up when none came)
    schema = request.headers.get("azureml-model-deployment") or "gpt2"
    if schema not in SCHEMAS:
        return _error(404, "DeploymentNotFound", f"no deployment {schema!r}", request_id)
    try:
        body = json.loads(request.get_data())
        prompt, parameters = _chat(schema, body) if schema.endswith("-chat") else _completion(schema, body)
    except (ValueError, SchemaMismatch) as exc:
        return _error(424, "ModelError", f"{schema} model cannot read the request: {exc}", request_id)
    if prompt.startswith("fail-424"):
        return _error(424, "ModelError", "the model crashed on purpose", request_id)
    if prompt.startswith("fail-429"):
        return _error(429, "TooManyRequests", "throttled on purpose", request_id, {"Retry-After": "1"})
    if prompt.startswith("fail-503"):
        return _error(503, "ServiceUnavailable", "unavailable on purpose", request_id)
    if prompt.startswith("fail-raise"):
        raise RuntimeError("run() raised on purpose")
    return AMLResponse(_answer(schema, _text(schema, prompt, parameters)), 200, {}, json_str=True)
