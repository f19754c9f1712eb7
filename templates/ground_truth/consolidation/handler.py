"""cloudft's Ground Truth annotation-consolidation Lambda: plain Python, no dependencies beyond the Lambda
runtime (boto3 is imported only to read the payload from S3).

Event (documented shape):
    {"version": "2018-10-16", "labelingJobArn": ..., "labelAttributeName": "preference", "roleArn": ...,
     "payload": {"s3Uri": "s3://bucket/key.json"}, "outputConfig": ...}
The payload file is a list of {"datasetObjectId", "dataObject", "annotations": [{"workerId",
"annotationData": {"content": "<JSON string>"} or {"s3Uri": "s3://..."}}]} (AWS: "The annotationData key contains
one of the following: content ... s3Uri", sms-custom-templates-step3-lambda-requirements).

Each worker counts once (a repeated workerId keeps its last answer and is reported), and one unreadable answer or
object never fails the batch: it is listed with its error next to the others.

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


def annotation_content(ann: Any, read: Optional[Callable[[str], Any]] = None) -> Any:
    """One annotation's answer: `annotationData.content`, or the JSON document at `annotationData.s3Uri`."""
    if not isinstance(ann, dict):
        raise ValueError(f"annotation is a {type(ann).__name__}, not an object")
    data = ann.get("annotationData")
    if not isinstance(data, dict):
        raise ValueError("annotation has no annotationData object")
    if data.get("content") is not None:
        return data["content"]
    uri = data.get("s3Uri") or data.get("s3uri")
    if uri:
        if read is None:
            raise ValueError(f"answer stored at {uri} and no S3 reader given")
        return read(uri)
    raise ValueError("annotationData has neither content nor s3Uri")


def worker_answers(annotations: Any, read: Optional[Callable[[str], Any]] = None) -> tuple[list[dict], list[str]]:
    """[{workerId, shown, rationale} or {workerId, shown: None, error}], one per worker (the last answer of a
    repeated workerId), and notes about what was repeated."""
    by_worker: dict[str, dict] = {}
    seen: dict[str, int] = {}
    for i, ann in enumerate(annotations if isinstance(annotations, list) else []):
        worker = str(ann.get("workerId")) if isinstance(ann, dict) and ann.get("workerId") else f"<no workerId #{i}>"
        seen[worker] = seen.get(worker, 0) + 1
        try:
            shown, rationale = parse_answer(annotation_content(ann, read))
            by_worker[worker] = {"workerId": worker, "shown": shown, "rationale": rationale}
        except Exception as exc:  # noqa: BLE001 - any unreadable answer is reported, never fatal
            by_worker[worker] = {"workerId": worker, "shown": None, "error": f"{type(exc).__name__}: {exc}"}
    notes = [f"worker {w} answered {n} times; counted once (the last answer)" for w, n in seen.items() if n > 1]
    return list(by_worker.values()), notes


def consolidate_object(obj: dict, label_attribute: str, read: Optional[Callable[[str], Any]] = None) -> dict:
    """Votes, display-orientation winner (strict majority of non-skip votes) and per-worker answers."""
    votes = {"A": 0, "B": 0, "tie": 0, "skip": 0}
    answers, notes = worker_answers((obj or {}).get("annotations") if isinstance(obj, dict) else None, read)
    for a in answers:
        if a["shown"] is not None:
            votes[a["shown"]] += 1
    decided = votes["A"] + votes["B"] + votes["tie"]
    top = max(("A", "B", "tie"), key=lambda k: votes[k])
    winner: Optional[str] = top if decided and votes[top] * 2 > decided else None
    content = {"winner_shown": winner, "votes_shown": votes, "answers": answers,
               "unparsed": sum(a["shown"] is None for a in answers), "notes": notes}
    return {"datasetObjectId": str((obj or {}).get("datasetObjectId", "")) if isinstance(obj, dict) else "",
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
    out = []
    for obj in objects if isinstance(objects, list) else []:
        try:
            out.append(consolidate_object(obj, label_attribute, read))
        except Exception as exc:  # noqa: BLE001 - one bad object never fails the batch
            oid = str(obj.get("datasetObjectId", "")) if isinstance(obj, dict) else ""
            out.append({"datasetObjectId": oid, "consolidatedAnnotation": {"content": {label_attribute: {
                "winner_shown": None, "answers": [], "unparsed": 0, "error": f"{type(exc).__name__}: {exc}"}}}})
    return out
