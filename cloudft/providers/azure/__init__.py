"""Azure ML provider: data assets, environment, command jobs / SFT→DPO pipelines, online endpoints.

Importing this package does not import the Azure SDK; it is imported inside the methods that need it.
"""

from .provider import AzureProvider

__all__ = ["AzureProvider"]
