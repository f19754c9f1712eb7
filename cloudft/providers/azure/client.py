"""MLClient construction: DefaultAzureCredential for real runs; credential and transport injectable for tests."""

from __future__ import annotations

from typing import Any, Optional

from ...errors import require
from .section import AzureSection


def make_client(section: AzureSection, credential: Any = None, transport: Any = None, **kwargs: Any):
    """An `azure.ai.ml.MLClient` for the spec's workspace.

    `credential` defaults to azure-identity's DefaultAzureCredential (az login, managed identity, env vars);
    `transport` (an azure-core HttpTransport) replaces the HTTP layer, e.g. with a recording fake in tests.
    """
    ml = require("azure.ai.ml", "azure")
    ids = section.workspace_ids()
    if credential is None:
        identity = require("azure.identity", "azure")
        import logging

        # its failure report goes to stderr as a warning per attempt; the CLI prints one message instead
        logging.getLogger("azure.identity").setLevel(logging.ERROR)
        credential = identity.DefaultAzureCredential()
    if transport is not None:
        kwargs["transport"] = transport
    return ml.MLClient(credential=credential, show_progress=False, enable_telemetry=False, **ids, **kwargs)


def job_studio_url(job: Any) -> Optional[str]:
    services = getattr(job, "services", None) or {}
    studio = services.get("Studio")
    return getattr(studio, "endpoint", None) if studio else None
