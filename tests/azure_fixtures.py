"""Test doubles at the Azure SDK's own seams: an azure-core transport that records and answers the HTTP
requests MLClient sends, and a token credential stub (no azure-identity, no network, no account)."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union
from urllib.parse import urlparse

from azure.core.credentials import AccessToken
from azure.core.pipeline.transport import HttpTransport

SUB = "00000000-0000-0000-0000-000000000000"
RG = "cloudft-rg"
WS = "cloudft-ws"
ARM_WS = (f"https://management.azure.com/subscriptions/{SUB}/resourceGroups/{RG}"
          f"/providers/Microsoft.MachineLearningServices/workspaces/{WS}")
AZURE_SECTION = {"subscription_id": SUB, "resource_group": RG, "workspace": WS, "location": "westeurope"}


def _fake_jwt(scopes: tuple = ()) -> str:
    """An unsigned JWT-shaped token: the SDK decodes (without verifying) the caller's oid/tid for pipelines."""
    import base64

    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    claims = {"oid": "00000000-0000-0000-0000-0000000000aa", "tid": "00000000-0000-0000-0000-0000000000bb",
              "upn": "tester@example.com", "exp": int(time.time()) + 3600}
    if scopes:  # audience = the resource the token was asked for (the SDK checks it for the ml.azure.com scope)
        claims["aud"] = scopes[0].rsplit("/.default", 1)[0]
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.c2ln"


class FakeCredential:
    """A TokenCredential: what DefaultAzureCredential looks like to azure-core."""

    def __init__(self) -> None:
        self.scopes: list[tuple] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(_fake_jwt(scopes), int(time.time()) + 3600)

    def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        from azure.core.credentials import AccessTokenInfo

        self.scopes.append(scopes)
        return AccessTokenInfo(_fake_jwt(scopes), int(time.time()) + 3600)


@dataclass
class Recorded:
    method: str
    url: str
    body: Any
    headers: dict

    @property
    def path(self) -> str:
        return urlparse(self.url).path


#: (status, body) or (status, body, headers); or a function of the request returning one
Answer = Union[tuple, Callable[["Recorded"], tuple]]


@dataclass
class Route:
    method: str
    pattern: str
    answer: Answer
    times: Optional[int] = None  # None: always

    def matches(self, req: Recorded) -> bool:
        return req.method == self.method and re.search(self.pattern, req.url) is not None


def _raw_response(status: int, body: Any, headers: Optional[dict] = None) -> bytes:
    payload = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    head = {"Content-Type": "application/octet-stream" if isinstance(body, bytes) else "application/json",
            "Content-Length": str(len(payload)), "x-ms-request-id": "fake", **(headers or {})}
    lines = "".join(f"{k}: {v}\r\n" for k, v in head.items())
    return f"HTTP/1.1 {status} X\r\n{lines}\r\n".encode() + payload


def not_found(req: Recorded) -> tuple[int, Any]:
    return 404, {"error": {"code": "UserError", "message": f"{req.path} not found"}}


def echo(req: Recorded) -> tuple[int, Any]:
    """PUT answers: the body back with the resource's id and name (as ARM does)."""
    body = dict(req.body or {})
    body.setdefault("id", req.path)
    body.setdefault("name", req.path.rstrip("/").split("/")[-1])
    return 200, body


class _Chunks:
    """What azure-core's stream download hands azure-storage-blob: an iterator over the body that also carries the
    response (`.response`) and takes attributes (the blob client sets `.properties`)."""

    def __init__(self, response: Any) -> None:
        self.response = response
        self.content_length = int(response.headers.get("Content-Length", 0))  # as azure-core's generators set it
        self._parts = iter([response.read()])

    def __iter__(self) -> "_Chunks":
        return self

    def __next__(self) -> bytes:
        return next(self._parts)


class RecordingTransport(HttpTransport):
    """An azure-core HttpTransport: records every request MLClient sends and answers from `routes`
    (first match wins; unmatched GETs are 404, unmatched PUTs echo their body, anything else 404)."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.routes: list[Route] = []

    def add(self, method: str, pattern: str, answer: Answer, times: Optional[int] = None) -> "RecordingTransport":
        self.routes.insert(0, Route(method, pattern, answer, times))
        return self

    def find(self, method: str, pattern: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and re.search(pattern, r.url)]

    # -- HttpTransport ------------------------------------------------------------------------------
    def send(self, request: Any, **kwargs: Any) -> Any:
        from http.client import HTTPResponse

        from azure.core.pipeline.transport._base import BytesIOSocket, HttpClientTransportResponse
        from azure.core.rest import HttpRequest as RestRequest
        from azure.core.rest._http_response_impl import RestHttpClientTransportResponse

        raw = request.content if isinstance(request, RestRequest) else request.data
        if raw is None and getattr(request, "body", None) is not None:
            raw = request.body
        try:
            body = json.loads(raw) if isinstance(raw, (str, bytes)) and raw else raw
        except ValueError:
            body = raw
        rec = Recorded(request.method, request.url, body, dict(request.headers))
        self.requests.append(rec)
        status, payload, *headers = self._answer(rec)
        resp = HTTPResponse(BytesIOSocket(_raw_response(status, payload, *headers)), method=request.method)
        resp.begin()
        if isinstance(request, RestRequest):
            class _Response(RestHttpClientTransportResponse):
                def iter_bytes(self, **kw: Any):  # streamed reads (LRO polling, downloads)
                    yield self.read()

                iter_raw = iter_bytes

                def stream_download(self, pipeline: Any, **kw: Any):  # blob downloads read the body in chunks
                    return _Chunks(self)

            out = _Response(request=request, internal_response=resp)
            out.read()
            return out
        out = HttpClientTransportResponse(request, resp)
        out.body()
        return out

    def _answer(self, rec: Recorded) -> tuple:
        for route in self.routes:
            if route.matches(rec) and route.times != 0:
                if route.times is not None:
                    route.times -= 1
                return route.answer(rec) if callable(route.answer) else route.answer
        if rec.method == "PUT":
            return echo(rec)
        return not_found(rec)

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> "RecordingTransport":
        return self

    def __exit__(self, *args: Any) -> None:
        pass


DATASTORE = {
    "id": f"{ARM_WS.split('management.azure.com')[1]}/datastores/workspaceblobstore",
    "name": "workspaceblobstore",
    "properties": {"datastoreType": "AzureBlob", "accountName": "cloudftsa", "containerName": "azureml-blobstore",
                   "endpoint": "core.windows.net", "protocol": "https", "isDefault": True,
                   "credentials": {"credentialsType": "AccountKey"}},
}


def pending_upload(req: Recorded) -> tuple[int, Any]:
    """A temporary SAS blob reference for the code snapshot upload."""
    blob = "https://cloudftsa.blob.core.windows.net/code-snapshots/" + req.path.split("/codes/")[1].split("/")[0]
    return 200, {"blobReferenceForConsumption": {"blobUri": blob, "credential": {
        "credentialType": "SAS", "sasUri": blob + "?sv=fake&sig=fake"}},
        "pendingUploadId": "fake", "pendingUploadType": "TemporaryBlobReference"}


API = "https://westeurope.api.azureml.ms"
WORKSPACE = {"id": ARM_WS.split("management.azure.com")[1], "name": WS, "location": "westeurope",
             "properties": {"discoveryUrl": f"{API}/discovery", "workspaceId": "11111111-2222-3333-4444-555555555555"}}


def workspace(transport: RecordingTransport) -> RecordingTransport:
    """Answers for what the SDK looks up: the workspace and its service discovery (run history), the
    default datastore and its key, blob storage."""
    transport.add("GET", re.escape(ARM_WS) + r"\?", (200, WORKSPACE))
    transport.add("GET", r"/discovery", (200, {"api": API, "history": API, "experimentation": API}))
    transport.add("GET", r"/datastores/workspaceblobstore\?", (200, DATASTORE))
    transport.add("GET", r"/datastores\?.*isDefault", (200, {"value": [DATASTORE]}))
    transport.add("POST", r"/datastores/workspaceblobstore/listSecrets", (200, {"secretsType": "AccountKey",
                                                                              "key": "ZmFrZS1rZXk="}))
    transport.add("GET", r"/codes/[^/]+/versions\?.*hash=", (200, {"value": []}))  # no snapshot with this hash yet
    transport.add("POST", r"/codes/[^/]+/versions/[^/]+/startPendingUpload", pending_upload)
    transport.add("PUT", r"\.blob\.core\.windows\.net/", (201, None))
    transport.add("PUT", r"\.blob\.core\.windows\.net/.*comp=metadata", (200, None))
    transport.add("HEAD", r"\.blob\.core\.windows\.net/", not_found)
    transport.add("GET", r"\.blob\.core\.windows\.net/.*comp=list", (200, b'<?xml version="1.0" encoding="utf-8"?>'
                  b'<EnumerationResults><Blobs></Blobs><NextMarker /></EnumerationResults>'))
    return transport


def route_blob_storage(monkeypatch: Any, transport: RecordingTransport) -> None:
    """Blob uploads go through azure-storage-blob clients the SDK builds itself (without MLClient's transport);
    hand them the same recording transport at that seam."""
    import functools

    from azure.ai.ml._artifacts import _blob_storage_helper as helper
    from azure.storage.blob import BlobServiceClient

    from azure.storage.blob import ContainerClient

    class _Containers:
        @staticmethod
        def from_container_url(url: str, credential: Any = None, **kwargs: Any) -> ContainerClient:
            return ContainerClient.from_container_url(url, credential, transport=transport, **kwargs)

    monkeypatch.setattr(helper, "BlobServiceClient", functools.partial(BlobServiceClient, transport=transport))
    monkeypatch.setattr(helper, "ContainerClient", _Containers)


class ArmStore:
    """Answers ARM PUT/GET of workspace resources from what was PUT before (like the service would):
    data and environment versions, jobs, models, online endpoints and deployments."""

    KINDS = r"/(data|environments|models)/[^/?]+/versions/[^/?]+|/jobs/[^/?]+|/onlineEndpoints/[^/?]+(/deployments/[^/?]+)?"

    def __init__(self, transport: RecordingTransport) -> None:
        self.items: dict[str, dict] = {}
        self.status: dict[str, str] = {}  # job name → status to report
        transport.add("PUT", self.KINDS + r"\?", self._put)
        transport.add("GET", self.KINDS + r"\?", self._get)

    @staticmethod
    def key(req: Recorded) -> str:
        return req.path.rstrip("/")

    def _put(self, req: Recorded) -> tuple[int, Any]:
        status, body = echo(req)
        props = body.setdefault("properties", {})
        if "/onlineEndpoints/" in req.path:
            props["provisioningState"] = "Succeeded"
            props.setdefault("scoringUri", f"https://{req.path.split('/onlineEndpoints/')[1].split('/')[0]}"
                                           ".westeurope.inference.ml.azure.com/score")
        if "/jobs/" in req.path:
            props.setdefault("status", "Queued")
        if "/deployments/" in req.path:
            props["scaleSettings"] = props.get("scaleSettings") or {"scaleType": "Default"}
        if "/models/" in req.path:
            props.setdefault("flavors", {})
        body.setdefault("location", "westeurope")
        self.items[self.key(req)] = body
        return status, body

    def _get(self, req: Recorded) -> tuple[int, Any]:
        body = self.items.get(self.key(req))
        if body is None:
            return not_found(req)
        name = self.key(req).split("/")[-1]
        if "/jobs/" in req.path and name in self.status:
            body["properties"]["status"] = self.status[name]
        return 200, body

    def created(self, kind: str) -> list[str]:
        return [k for k in self.items if f"/{kind}/" in k]
