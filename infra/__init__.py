"""cloudft's Pulumi programs (`infra/aws`, `infra/azure`), their reusable components and the policy pack."""
