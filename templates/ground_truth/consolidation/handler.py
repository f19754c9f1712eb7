"""cloudft's Ground Truth annotation-consolidation Lambda: plain Python, no dependencies beyond the Lambda
runtime (boto3 is imported only to read the payload from S3).

Event (documented shape):
    {"version": "2018-10-16", "labelingJobArn": ..., "labelAttributeName": "preference", "roleArn": ...,
     "payload": {"s3Uri": "s3://bucket/key.json"}, "outputConfig": ...}
The payload file is a list of {"datasetObjectId", "dataObject", "annotations": [{"workerId",
"annotationData": {"content": "<JSON string>"}}]}.

Returns one entry per object; the label is in display orientation ("A" = the response shown first), because
the display swap is a property of the manifest line, which cloudft un-does when collecting:
    [{"datasetObjectId": "0", "consolidatedAnnotation": {"content": {"preference": {
        "winner_shown": "A", "votes_shown": {"A": 2, "B": 1, "tie": 0, "skip": 0},
        "answers": [{"workerId": "...", "shown": "A", "rationale": "..."}], "unparsed": 0}}}}]
"""

from __future__ import annotations

import json
from typing import Any, Callable, Optional

#: crowd-classifier categories in the task template → what the worker picked on screen.
CATEGORIES = {"A is better": "A", "B is better": "B", "About the same": "tie", "Cannot judge / skip": "skip"}
CLASSIFIER = "preference"
RATIONALE = "rationale"


def parse_answer(content: Any) -> tuple[str, str]:
    """(shown choice, rationale) from one worker's answer: `answerContent` as a dict or a JSON string.

    The classifier gives {"preference": {"label": "A is better"}}; a bool-map {"A is better": true} or a plain
    string is accepted too. Raises ValueError for anything else.
    """
    if isinstance(content, str):
        content = json.loads(content)
    if not isinstance(content, dict) or CLASSIFIER not in content:
        raise ValueError(f"answer has no '{CLASSIFIER}' field")
    value = content[CLASSIFIER]
    if isinstance(value, dict) and "label" in value:
        value = value["label"]
    elif isinstance(value, dict):
        picked = [k for k, v in value.items() if v is True]
        if len(picked) != 1:
            raise ValueError(f"expected exactly one selected category, got {picked}")
        value = picked[0]
    if value not in CATEGORIES:
        raise ValueError(f"unknown category {value!r}")
    rationale = content.get(RATIONALE) or ""
    return CATEGORIES[value], rationale if isinstance(rationale, str) else json.dumps(rationale)


def consolidate_object(obj: dict, label_attribute: str) -> dict:
    """Votes, display-orientation winner (strict majority of non-skip votes) and per-worker answers."""
    votes = {"A": 0, "B": 0, "tie": 0, "skip": 0}
    answers, unparsed = [], 0
    for ann in obj.get("annotations") or []:
        try:
            shown, rationale = parse_answer((ann.get("annotationData") or {}).get("content"))
        except (ValueError, TypeError) as exc:
            unparsed += 1
            answers.append({"workerId": ann.get("workerId"), "shown": None, "error": str(exc)})
            continue
        votes[shown] += 1
        answers.append({"workerId": ann.get("workerId"), "shown": shown, "rationale": rationale})
    decided = votes["A"] + votes["B"] + votes["tie"]
    top = max(("A", "B", "tie"), key=lambda k: votes[k])
    winner: Optional[str] = top if decided and votes[top] * 2 > decided else None
    content = {"winner_shown": winner, "votes_shown": votes, "answers": answers, "unparsed": unparsed}
    return {"datasetObjectId": obj["datasetObjectId"],
            "consolidatedAnnotation": {"content": {label_attribute: content}}}


def read_s3_json(uri: str) -> Any:
    """Read a JSON document from s3://bucket/key with the Lambda runtime's boto3."""
    import boto3

    bucket, _, key = uri[len("s3://"):].partition("/")
    body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    return json.loads(body)


def handler(event: dict, context: Any = None, read: Callable[[str], Any] = read_s3_json) -> list:
    """Lambda entry point: consolidate every object in the payload."""
    label_attribute = event["labelAttributeName"]
    payload = event["payload"]
    objects = read(payload["s3Uri"]) if isinstance(payload, dict) else payload  # a list: inline (local tests)
    return [consolidate_object(obj, label_attribute) for obj in objects]
