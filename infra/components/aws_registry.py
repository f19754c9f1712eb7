"""ECR repository for the train_entry image."""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_aws as aws


class ImageRepository(pulumi.ComponentResource):
    """ECR repository with immutable tags, scan on push, KMS encryption and a lifecycle policy that keeps the last
    `keep_images` images. Outputs: `repository_url`, `repository_arn`."""

    def __init__(self, name: str, *, kms_key_arn: pulumi.Input[str], keep_images: int = 30,
                 force_delete: bool = False, tags: Optional[dict[str, str]] = None,
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("cloudft:aws:ImageRepository", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.repository = aws.ecr.Repository(
            f"{name}-repo", image_tag_mutability="IMMUTABLE", image_scanning_configuration={"scan_on_push": True},
            encryption_configurations=[{"encryption_type": "KMS", "kms_key": kms_key_arn}],
            force_delete=force_delete, tags=tags, opts=child)
        aws.ecr.LifecyclePolicy(f"{name}-image-lifecycle", repository=self.repository.name, policy=pulumi.Output.json_dumps({
            "rules": [{"rulePriority": 1, "description": f"keep the last {keep_images} images",
                       "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": keep_images},
                       "action": {"type": "expire"}}]}), opts=child)
        self.repository_url = self.repository.repository_url
        self.repository_arn = self.repository.arn
        self.register_outputs({"repository_url": self.repository_url, "repository_arn": self.repository_arn})
