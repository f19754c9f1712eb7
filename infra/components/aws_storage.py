"""S3 bucket for data, checkpoints and artifacts, encrypted with a customer-managed KMS key."""

from __future__ import annotations

from typing import Optional, Sequence

import pulumi
import pulumi_aws as aws

from . import iam


class SecureBucket(pulumi.ComponentResource):
    """A customer KMS key and an S3 bucket: SSE-KMS, versioning, all public access blocked, TLS-only bucket policy,
    bucket-owner-enforced ownership and lifecycle rules that expire old checkpoints and noncurrent versions.

    Outputs: `bucket` (name), `bucket_arn`, `kms_key_arn`, `kms_key_id`.
    """

    def __init__(self, name: str, *, checkpoint_prefixes: Sequence[str], checkpoint_expiration_days: int = 30,
                 noncurrent_expiration_days: int = 30, force_destroy: bool = False,
                 tags: Optional[dict[str, str]] = None, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("cloudft:aws:SecureBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.key = aws.kms.Key(f"{name}-key", description=f"cloudft {name}: data, checkpoints, artifacts",
                               deletion_window_in_days=10, enable_key_rotation=True, tags=tags, opts=child)
        aws.kms.Alias(f"{name}-key-alias", name_prefix=f"alias/{name}-", target_key_id=self.key.key_id, opts=child)
        # "sagemaker" in the name keeps the bucket inside AmazonSageMakerGroundTruthExecution's naming convention.
        self.bucket = aws.s3.Bucket(f"{name}-bucket", bucket_prefix=f"{name}-sagemaker-"[:37].lower(),
                                    force_destroy=force_destroy, tags=tags, opts=child)
        aws.s3.BucketOwnershipControls(f"{name}-ownership", bucket=self.bucket.id,
                                       rule={"object_ownership": "BucketOwnerEnforced"}, opts=child)
        block = aws.s3.BucketPublicAccessBlock(f"{name}-public-access", bucket=self.bucket.id, block_public_acls=True,
                                               block_public_policy=True, ignore_public_acls=True,
                                               restrict_public_buckets=True, opts=child)
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption", bucket=self.bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms",
                                                                "kms_master_key_id": self.key.arn},
                    "bucket_key_enabled": True}], opts=child)
        versioning = aws.s3.BucketVersioning(f"{name}-versioning", bucket=self.bucket.id,
                                             versioning_configuration={"status": "Enabled"}, opts=child)
        objects = self.bucket.arn.apply(lambda arn: f"{arn}/*")
        self.policy = aws.s3.BucketPolicy(
            f"{name}-policy", bucket=self.bucket.id,
            policy=iam.document([
                iam.statement("DenyInsecureTransport", ["s3:*"], [self.bucket.arn, objects], effect="Deny",
                              principal={"AWS": "*"}, condition={"Bool": {"aws:SecureTransport": "false"}}),
                iam.statement("DenyOldTls", ["s3:*"], [self.bucket.arn, objects], effect="Deny",
                              principal={"AWS": "*"}, condition={"NumericLessThan": {"s3:TlsVersion": "1.2"}}),
            ]),
            # The public access block must exist first, or S3 may reject the policy as public during creation.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[block]))
        rules = [{"id": f"expire-checkpoints-{i}", "status": "Enabled", "filter": {"prefix": p},
                  "expiration": {"days": checkpoint_expiration_days},
                  "noncurrent_version_expiration": {"noncurrent_days": 1}}
                 for i, p in enumerate(checkpoint_prefixes)]
        rules.append({"id": "noncurrent-versions-and-uploads", "status": "Enabled", "filter": {},
                      "noncurrent_version_expiration": {"noncurrent_days": noncurrent_expiration_days},
                      "abort_incomplete_multipart_upload": {"days_after_initiation": 7}})
        self.lifecycle = aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle", bucket=self.bucket.id, rules=rules,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]))
        self.bucket_name = self.bucket.bucket
        self.bucket_arn = self.bucket.arn
        self.kms_key_arn = self.key.arn
        self.register_outputs({"bucket": self.bucket_name, "bucket_arn": self.bucket_arn,
                               "kms_key_arn": self.kms_key_arn})
