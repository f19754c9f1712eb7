"""The generated part of docs/aws.md: the preflight rules with their sources, and the permissions manifest as the
minimum IAM policy per actor. `python -m cloudft.providers.aws.docs` rewrites the block; a test keeps it current."""

from __future__ import annotations

import json
import re
from pathlib import Path

from . import permissions
from .preflight import PLAN_RULES, gt_manifest_lines

BEGIN, END = "<!-- BEGIN GENERATED: python -m cloudft.providers.aws.docs -->", "<!-- END GENERATED -->"
#: Placeholders the minimum policies are printed with (replace them with your names).
PLACEHOLDERS = {
    "partition": "aws", "region": "REGION", "account": "ACCOUNT", "bucket": "BUCKET", "prefix": "PREFIX",
    "kms_key": "arn:aws:kms:REGION:ACCOUNT:key/KEY_ID", "role": "arn:aws:iam::ACCOUNT:role/EXECUTION_ROLE",
    "pipeline_role": "arn:aws:iam::ACCOUNT:role/PIPELINE_ROLE",
    "repository": "arn:aws:ecr:REGION:IMAGE_ACCOUNT:repository/IMAGE_REPOSITORY",
    "secret": "arn:aws:secretsmanager:REGION:ACCOUNT:secret:SECRET_NAME-SUFFIX", "subnet": "SUBNET_ID",
    "security_group": "SECURITY_GROUP_ID", "function": "arn:aws:lambda:REGION:ACCOUNT:function:CONSOLIDATION_FN",
    "log_group": "arn:aws:logs:REGION:ACCOUNT:log-group:/aws/lambda/CONSOLIDATION_FN",
}
ALL_FEATURES = ("kms", "vpc", "secrets", "ecr", "pipeline", "labeling")
TITLES = {"cli": "The CLI user (each command)", "sdk": "The SageMaker SDK's own calls (as the CLI user)",
          "job": "The training job's execution role (`aws.role_arn`)",
          "pipeline": "The pipeline role (`aws.pipeline_role_arn`)",
          "labeling": "The Ground Truth labeling job's execution role",
          "consolidation": "The consolidation Lambda's role"}


def _rules_table() -> list[str]:
    lines = ["| rule | source |", "|---|---|"]
    for r in (*PLAN_RULES, gt_manifest_lines):
        lines.append(f"| `{r.id}` | {r.source} |")
    return lines


def _actor_section(actor: str) -> list[str]:
    lines = [f"#### {TITLES[actor]}", "", "| use | action | resources | condition keys | when | source |",
             "|---|---|---|---|---|---|"]
    for n in permissions.needs(actor, ALL_FEATURES):
        ctx = ", ".join(f"`{k}={v}`" for k, v in n.context)
        lines.append(f"| {n.use} | `{n.action}` | {', '.join(f'`{r}`' for r in n.resources)} | {ctx} | "
                     f"{n.when or 'always'} | {n.source} |")
    policy = permissions.minimum_policy(actor, PLACEHOLDERS, ALL_FEATURES)
    lines += ["", "```json", json.dumps(policy, indent=2), "```", ""]
    return lines


def block() -> str:
    lines = [BEGIN, "", "### Preflight rules", "", *_rules_table(), "",
             "### Minimum IAM policies (the permissions manifest)", "",
             "Generated from `cloudft/providers/aws/permissions.py` with every feature on (drop the statements of "
             "features you do not use: " + ", ".join(f"`{f}`" for f in ALL_FEATURES) + "). Sources: "
             + "; ".join(f"`{k}`: {v}" for k, v in permissions.SOURCES.items()) + ".", ""]
    for actor in permissions.ACTORS:
        lines += _actor_section(actor)
    lines.append(END)
    return "\n".join(lines)


def docs_path() -> Path:
    return Path(__file__).resolve().parents[3] / "docs" / "aws.md"


def rewrite(path: Path) -> None:
    text = path.read_text()
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    new = pattern.sub(lambda _: block(), text) if pattern.search(text) else text.rstrip() + "\n\n" + block() + "\n"
    path.write_text(new)


if __name__ == "__main__":
    rewrite(docs_path())
