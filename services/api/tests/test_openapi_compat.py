"""The OpenAPI document covers the compatible APIs too: their parameters, every status
code and content type they answer, and what the server answers for any operation."""

from __future__ import annotations

import httpx

PROBLEM = "application/problem+json"


async def test_every_operation_documents_server_answers(api):
    spec = (await api.get("/openapi.json")).json()
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            responses = op["responses"]
            for status in ("400", "431"):  # malformed HTTP, headers over the cap
                assert PROBLEM in responses[status]["content"], (method, path, status)
            if method in ("post", "put", "patch"):
                assert PROBLEM in responses["413"]["content"], (method, path)
            assert any(c.startswith("2") for c in responses), (method, path)


async def test_compat_operations_document_their_own_answers(api):
    spec = (await api.get("/openapi.json")).json()
    compat = {
        (method, path): op
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
        if any(tag.startswith("compat") for tag in op.get("tags", []))
    }
    assert len(compat) >= 11
    for (method, path), op in compat.items():
        responses = op["responses"]
        assert "422" not in responses, (method, path)  # FastAPI's guess: never answered
        assert PROBLEM in responses["503"]["content"], (method, path)
        if not path.startswith("/cgi-bin/"):  # SMStele answers everything with 200
            assert "401" in responses, (method, path)
        assert (
            op.get("parameters") or op.get("requestBody") or "{" in path or path in ("/v1/sse",)
        ), (method, path)
    sender = compat[("get", "/")]["responses"]
    assert {"200", "400", "401", "429", "500"} <= set(sender)
    query = compat[("get", "/v1/query")]["responses"]
    assert "text/plain" in query["404"]["content"] and "502" not in query
    tools = compat[("get", "/api/v1.0/sms/{kind}/{message_id}")]
    assert tools["security"] == [{"basic": []}]
    assert {"200", "401", "403", "404", "429"} <= set(tools["responses"])


async def test_compat_answers_are_the_documented_ones(api):
    """A few malformed requests to each compatible API: each answer's status and content
    type are in the document (schemathesis does this at scale in test_schemathesis.py)."""
    spec = (await api.get("/openapi.json")).json()
    basic = httpx.BasicAuth("nobody", "wrong")
    tries = [
        ("GET", "/", "/?c=send_sms&access-token=nope", {}),
        ("GET", "/api/v1.0/sms/outgoing", "/api/v1.0/sms/outgoing?mobiles=1", {"auth": basic}),
        ("POST", "/api/v1.0/sms/outgoing", "/api/v1.0/sms/outgoing", {"content": b"[[[["}),
        ("GET", "/api/v1.0/sms/{kind}/{message_id}", "/api/v1.0/sms/sent/x", {"auth": basic}),
        ("GET", "/v1/query", "/v1/query?message_id=" + "9" * 50, {}),
        ("POST", "/v1/send", "/v1/send", {"content": b"dst=&text=", "headers": {}}),
        ("GET", "/cgi-bin/sendsms", "/cgi-bin/sendsms?login=x", {}),
        ("POST", "/cgi-bin/status", "/cgi-bin/status", {"content": b"\xff\xfe"}),
    ]
    for method, template, url, kwargs in tries:
        r = await api.request(method, url, **kwargs)
        documented = spec["paths"][template][method.lower()]["responses"]
        assert str(r.status_code) in documented, (method, url, r.status_code, r.text[:200])
        ctype = r.headers["content-type"].split(";")[0]
        assert ctype in documented[str(r.status_code)]["content"], (method, url, ctype)
