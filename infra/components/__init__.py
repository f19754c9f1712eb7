"""Reusable Pulumi `ComponentResource`s for cloudft, plus the security rules they are held to.

Modules (import only what you need; the cloud SDKs load lazily per module):

- `iam`: IAM policy documents built from statements (JSON a test or policy can read).
- `aws_storage.SecureBucket`: S3 bucket + customer KMS key, versioning, public access blocked, TLS-only policy,
  checkpoint lifecycle.
- `aws_identity.SageMakerExecutionRole`: least-privilege SageMaker execution role.
- `aws_registry.ImageRepository`: ECR repository (immutable tags, scan on push, KMS).
- `aws_labeling.LabelingWorkforce`: Cognito pool + private Ground Truth workteam + consolidation Lambda.
- `aws_serving.AdapterEndpoint`: SageMaker model, endpoint configuration and endpoint.
- `aws_stack`: `AwsStackSettings` + `build_aws_stack(settings) -> outputs` (the whole `infra/aws` program).
- `azure_ml`: `MlWorkspace`, `GpuCluster`, `ManagedEndpoint`; `azure_stack`: settings + `build_azure_stack`.
- `rules`: pure-Python security rules over (type token, engine props); used by tests and `infra/policy`.
"""
