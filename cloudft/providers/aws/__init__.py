"""The AWS provider: SageMaker training (SDK v3 ModelTrainer + Hugging Face DLC), pipelines, endpoints.

Modules: section (the `aws:` spec section), session (boto3/SageMaker sessions, retries, endpoint
override), compute (instance choice), naming (idempotent names), staging (S3 uploads, source dir),
submit (ModelTrainer / pipeline), dryrun (recorded requests), operate (status/logs/stop/artifacts),
deploy (vLLM LoRA endpoint). Heavy imports (boto3, sagemaker) happen inside methods.
"""

from .provider import AwsProvider
from .section import AwsSection

__all__ = ["AwsProvider", "AwsSection"]
