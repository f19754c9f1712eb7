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


class FakeCredential:
    """A TokenCredential: what DefaultAzureCredential looks like to azure-core."""

    def __init__(self) -> None:
        self.scopes: list[tuple] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken("fake-token", int(time.time()) + 3600)

    def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        from azure.core.credentials import AccessTokenInfo

        self.scopes.append(scopes)
        return AccessTokenInfo("fake-token", int(time.time()) + 3600)


@dataclass
class Recorded:
    method: str
    url: str
    body: Any
    headers: dict

    @property
    def path(self) -> str:
        return urlparse(self.url).path


Answer = Union[tuple[int, Any], Callable[["Recorded"], tuple[int, Any]]]


@dataclass
class Route:
    method: str
    pattern: str
    answer: Answer
    times: Optional[int] = None  # None: always

    def matches(self, req: Recorded) -> bool:
        return req.method == self.method and re.search(self.pattern, req.url) is not None


def _raw_response(status: int, body: Any) -> bytes:
    payload = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    ctype = "application/octet-stream" if isinstance(body, bytes) else "application/json"
    head = (f"HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {len(payload)}\r\n"
            f"x-ms-request-id: fake\r\n\r\n")
    return head.encode() + payload


def not_found(req: Recorded) -> tuple[int, Any]:
    return 404, {"error": {"code": "UserError", "message": f"{req.path} not found"}}


def echo(req: Recorded) -> tuple[int, Any]:
    """PUT answers: the body back with the resource's id and name (as ARM does)."""
    body = dict(req.body or {})
    body.setdefault("id", req.path)
    body.setdefault("name", req.path.rstrip("/").split("/")[-1])
    return 200, body


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
        status, payload = self._answer(rec)
        resp = HTTPResponse(BytesIOSocket(_raw_response(status, payload)), method=request.method)
        resp.begin()
        if isinstance(request, RestRequest):
            out = RestHttpClientTransportResponse(request=request, internal_response=resp)
            out.read()
            return out
        out = HttpClientTransportResponse(request, resp)
        out.body()
        return out

    def _answer(self, rec: Recorded) -> tuple[int, Any]:
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


def workspace(transport: RecordingTransport) -> RecordingTransport:
    """Answers for what the SDK looks up around uploads: the default datastore, its key, blob storage."""
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
