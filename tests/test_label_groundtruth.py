"""Ground Truth path: requests validated by botocore's service model (Stubber), S3 via moto, the Liquid template on
hostile input, the consolidation Lambda on the documented event shapes, and collect → the same labels as the app."""

from __future__ import annotations

import datetime as dt
import json

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from cloudft.errors import CloudftError
from cloudft.label import groundtruth as gt
from cloudft.label import project_template
from cloudft.label.store import Store

REGION = "us-east-1"
ROLE = "arn:aws:iam::111122223333:role/cloudft-gt-exec"
TEAM = "arn:aws:sagemaker:us-east-1:111122223333:workteam/private-crowd/cloudft-raters"
HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)"> & "q"'


@pytest.fixture()
def aws(monkeypatch):
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="sagemaker-labels")
        yield s3


def _pairs(n=3, long_index=None):
    out = []
    for i in range(n):
        a = "x" * 25_000 if i == long_index else f"answer a{i} {HOSTILE}"
        out.append({"pair_id": f"p-{i}", "prompt": f"prompt {i}", "response_a": a, "response_b": f"answer b{i}",
                    "model_a": "m1", "model_b": "m2"})
    return out


def _cfg(**kw):
    return gt.JobConfig(bucket="sagemaker-labels", role_arn=ROLE, workteam_arn=TEAM, region=REGION,
                        job_name="cloudft-pref-test", **kw)


def _read(s3, key):
    return s3.get_object(Bucket="sagemaker-labels", Key=key)["Body"].read().decode()


def test_submit_uploads_and_creates_a_valid_job(aws):
    sm = boto3.client("sagemaker", region_name=REGION)
    cfg = _cfg(workers=3)
    template = project_template("ground_truth", gt.TEMPLATE_NAME)
    plan = gt.submit(_pairs(4, long_index=1), _cfg(workers=3), template, dry_run=True)
    with Stubber(sm) as stub:
        arn = "arn:aws:sagemaker:us-east-1:111122223333:labeling-job/cloudft-pref-test"
        stub.add_response("create_labeling_job", {"LabelingJobArn": arn}, plan["request"])
        result = gt.submit(_pairs(4, long_index=1), cfg, template, s3=aws, sagemaker=sm)
        stub.assert_no_pending_responses()
    assert result["LabelingJobArn"] == arn
    req = result["request"]["HumanTaskConfig"]
    assert req["PreHumanTaskLambdaArn"] == "arn:aws:lambda:us-east-1:432418664414:function:PRE-PassThrough"
    assert req["NumberOfHumanWorkersPerDataObject"] == 3
    lines = [json.loads(x) for x in _read(aws, "cloudft/labeling/cloudft-pref-test/input.manifest").splitlines()]
    assert [x["pair_id"] for x in lines] == ["p-0", "p-1", "p-2", "p-3"]
    for raw in _read(aws, "cloudft/labeling/cloudft-pref-test/input.manifest").splitlines():
        assert len(raw.encode("utf-8")) <= 100_000
        assert all(len(v) <= gt.ATTR_LIMIT for v in json.loads(raw).values() if isinstance(v, str))
    long = lines[1]
    assert long["response_a"] == "" and long["response_a_ref"].endswith("/texts/p-1/response_a.txt")
    assert _read(aws, "cloudft/labeling/cloudft-pref-test/texts/p-1/response_a.txt") == "x" * 25_000
    assert "<crowd-form>" in _read(aws, "cloudft/labeling/cloudft-pref-test/pairwise.liquid.html")


def test_service_model_rejects_a_bad_request_and_errors_surface(aws):
    sm = boto3.client("sagemaker", region_name=REGION)
    req = gt.build_request(_cfg(), "s3://b/m", "s3://b/t")
    req["HumanTaskConfig"]["TaskKeywords"] = []
    from botocore.exceptions import ParamValidationError

    with Stubber(sm) as stub, pytest.raises(ParamValidationError, match="TaskKeywords"):
        stub.add_response("create_labeling_job", {"LabelingJobArn": "arn:aws:sagemaker:us-east-1:1:labeling-job/x"})
        sm.create_labeling_job(**req)
    with pytest.raises(CloudftError, match="workers per object must be 1-9"):
        gt.submit(_pairs(), _cfg(workers=12), project_template("ground_truth", gt.TEMPLATE_NAME), dry_run=True)
    with Stubber(sm) as stub:
        stub.add_client_error("create_labeling_job", "AccessDeniedException", "Ground Truth is not available")
        with pytest.raises(CloudftError, match="AccessDeniedException"):
            gt.submit(_pairs(), _cfg(), project_template("ground_truth", gt.TEMPLATE_NAME), s3=aws, sagemaker=sm)
    with pytest.raises(CloudftError, match="no AWS pass-through"):
        gt.passthrough_arns("mars-north-1")


def _render(task_input):
    from liquid import Environment
    from markupsafe import Markup

    env = Environment(autoescape=True)  # Ground Truth escapes output by default
    env.filters["grant_read_access"] = lambda uri: "https://presigned.example/" + uri[5:] + "?sig=1&x=<\">"
    return env.from_string(project_template("ground_truth", gt.TEMPLATE_NAME).read_text()).render(
        task={"input": task_input})


def test_template_escapes_hostile_text_and_shows_display_order():
    line = gt.manifest_lines(_pairs(1), _cfg(), lambda *_: None)[0]
    line.update(source=HOSTILE, response_a="first " + HOSTILE, response_b="second</pre><script>x()</script>")
    for swapped in (False, True):
        html = _render({**line, "swapped": swapped})
        assert "<script>alert" not in html and "<img src=x" not in html and "</pre><script>x()" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=" in html
        a = html.split('id="cf-a"')[1].split("</pre>")[0]
        assert ("second&lt;/pre&gt;" in a) == swapped and ("first &lt;script&gt;" in a) == (not swapped)
    src = project_template("ground_truth", gt.TEMPLATE_NAME).read_text()
    body = src.split("-->", 1)[1]  # past the explanatory comment
    assert "skip_autoescape" not in body and "innerHTML" not in body and "textContent" in body
    ref = _render({**line, "response_a": "", "response_a_ref": "s3://b/t/a.txt", "swapped": False})
    assert 'data-src="https://presigned.example/b/t/a.txt?sig=1&amp;x=&lt;&#34;&gt;"' in ref


EVENT = {"version": "2018-10-16", "labelingJobArn": "arn:aws:sagemaker:us-east-1:111122223333:labeling-job/x",
         "labelCategories": None, "labelAttributeName": "preference", "roleArn": ROLE,
         "payload": {"s3Uri": "s3://sagemaker-labels/consolidation/payload.json"}, "outputConfig": "s3://b/out/"}


def _ann(worker, label, rationale=""):
    return {"workerId": worker, "annotationData": {"content": json.dumps(
        {"preference": {"label": label}, "rationale": rationale})}}


def test_consolidation_lambda_on_documented_event(aws):
    handler = gt.handler_module()
    payload = [
        {"datasetObjectId": "0", "dataObject": {"content": "q0"},
         "annotations": [_ann("w1", "A is better", "clearer"), _ann("w2", "A is better"), _ann("w3", "B is better")]},
        {"datasetObjectId": "1", "dataObject": {"s3Uri": "s3://b/x.json"},
         "annotations": [_ann("w1", "About the same"), _ann("w2", "Cannot judge / skip"),
                         {"workerId": "w3", "annotationData": {"content": "{\"other\": 1}"}}]},
    ]
    aws.put_object(Bucket="sagemaker-labels", Key="consolidation/payload.json", Body=json.dumps(payload))
    out = handler.handler(EVENT, None)
    assert [o["datasetObjectId"] for o in out] == ["0", "1"]
    first = out[0]["consolidatedAnnotation"]["content"]["preference"]
    assert first["winner_shown"] == "A" and first["votes_shown"] == {"A": 2, "B": 1, "tie": 0, "skip": 0}
    assert first["answers"][0] == {"workerId": "w1", "shown": "A", "rationale": "clearer"}
    second = out[1]["consolidatedAnnotation"]["content"]["preference"]
    assert second["winner_shown"] == "tie" and second["unparsed"] == 1
    assert second["answers"][2]["shown"] is None and "no 'preference'" in second["answers"][2]["error"]
    assert handler.parse_answer({"preference": {"A is better": False, "B is better": True}}) == ("B", "")


def _describe(manifest_uri):
    now = dt.datetime(2026, 8, 1, tzinfo=dt.timezone.utc)
    return {"LabelingJobStatus": "Completed", "LabelCounters": {"TotalLabeled": 2, "HumanLabeled": 2},
            "CreationTime": now, "LastModifiedTime": now, "JobReferenceCode": "abc",
            "LabelingJobName": "cloudft-pref-test",
            "LabelingJobArn": "arn:aws:sagemaker:us-east-1:111122223333:labeling-job/cloudft-pref-test",
            "LabelAttributeName": "preference",
            "InputConfig": {"DataSource": {"S3DataSource": {"ManifestS3Uri": manifest_uri}}},
            "OutputConfig": {"S3OutputPath": "s3://sagemaker-labels/cloudft/labeling/output/"},
            "RoleArn": ROLE,
            "HumanTaskConfig": {"WorkteamArn": TEAM, "UiConfig": {"UiTemplateS3Uri": "s3://b/t.html"},
                                "NumberOfHumanWorkersPerDataObject": 3, "TaskTimeLimitInSeconds": 1800,
                                "TaskTitle": "t", "TaskDescription": "d"}}


def test_collect_unswaps_and_matches_app_semantics(aws, tmp_path):
    sm = boto3.client("sagemaker", region_name=REGION)
    cfg = _cfg()
    pairs = _pairs(3)
    gt.submit(pairs, cfg, project_template("ground_truth", gt.TEMPLATE_NAME), s3=aws,
              sagemaker=_stubbed_create(boto3.client("sagemaker", region_name=REGION)))
    lines = [json.loads(x) for x in _read(aws, "cloudft/labeling/cloudft-pref-test/input.manifest").splitlines()]
    out_prefix = "cloudft/labeling/output/cloudft-pref-test"
    out_lines = []
    # p-0: no consolidation Lambda → worker-response-ref (custom jobs spell job_name with an underscore)
    ref = f"s3://sagemaker-labels/{out_prefix}/annotations/worker-response/iteration-1/0/2026-08-01_12:00:00.json"
    aws.put_object(Bucket="sagemaker-labels", Key=ref[len("s3://sagemaker-labels/"):], Body=json.dumps({"answers": [
        {"workerId": w, "timeSpentInSeconds": 40.5, "answerContent": {"preference": {"label": lab}}}
        for w, lab in (("w1", "A is better"), ("w2", "A is better"), ("w3", "B is better"))]}))
    out_lines.append({**lines[0], "preference": {}, "preference-metadata": {
        "job_name": "cloudft-pref-test", "type": "groundTruth/custom", "human-annotated": "yes",
        "worker-response-ref": ref}})
    # p-1 and p-2: cloudft's consolidation Lambda output
    handler = gt.handler_module()
    for line, labs in ((lines[1], ("B is better", "B is better", "About the same")),
                       (lines[2], ("A is better", "Cannot judge / skip", "B is better"))):
        obj = {"datasetObjectId": "1", "annotations": [_ann(f"w{i + 1}", lab) for i, lab in enumerate(labs)]}
        content = handler.consolidate_object(obj, "preference")["consolidatedAnnotation"]["content"]
        out_lines.append({**line, **content, "preference-metadata": {"job-name": "cloudft-pref-test"}})
    aws.put_object(Bucket="sagemaker-labels", Key=f"{out_prefix}/manifests/output/output.manifest",
                   Body="".join(json.dumps(x) + "\n" for x in out_lines))
    with Stubber(sm) as stub:
        stub.add_response("describe_labeling_job", _describe(cfg.uri("input.manifest")),
                          {"LabelingJobName": "cloudft-pref-test"})
        result = gt.collect("cloudft-pref-test", aws, sm)
    assert result["problems"] == [] and len(result["labels"]) == 9
    store = Store(tmp_path / "gt.sqlite")
    store.import_labels(result["pairs"], result["labels"], source="groundtruth")
    from cloudft.label.agreement import consolidate

    c = consolidate(store.labels())
    # what workers saw as A is response_b when the line was swapped
    def orig(shown_winner, line):
        return {"A": "b", "B": "a"}[shown_winner] if line["swapped"] else {"A": "a", "B": "b"}[shown_winner]

    assert c["p-0"]["winner"] == orig("A", lines[0]) and c["p-0"]["votes"]["skip"] == 0
    assert c["p-1"]["winner"] == orig("B", lines[1])
    assert c["p-2"]["winner"] is None and c["p-2"]["reason"] == "no majority"
    assert {lab["seconds"] for lab in store.labels() if lab["pair_id"] == "p-0"} == {40.5}
    assert store.items()["p-0"]["response_a"] == pairs[0]["response_a"]


def _stubbed_create(sm):
    stub = Stubber(sm)
    stub.add_response("create_labeling_job", {"LabelingJobArn": "arn:aws:sagemaker:us-east-1:1:labeling-job/x"})
    stub.activate()
    return sm


def test_collect_refuses_unfinished_jobs(aws):
    sm = boto3.client("sagemaker", region_name=REGION)
    desc = _describe("s3://sagemaker-labels/x/input.manifest")
    desc["LabelingJobStatus"] = "InProgress"
    with Stubber(sm) as stub:
        stub.add_response("describe_labeling_job", desc)
        with pytest.raises(CloudftError, match="is InProgress"):
            gt.collect("cloudft-pref-test", aws, sm)


def _acs_line(line, annotations):
    """An output-manifest line as AWS's ACS-PassThrough writes it: the post-annotation payload's annotations under
    <attr>.annotationsFromAllWorkers (aws-samples/aws-sagemaker-ground-truth-recipe annotation_consolidation_lambda.py;
    the payload shape: sms-custom-templates-step3-lambda-requirements)."""
    return {**line, "preference": {"annotationsFromAllWorkers": annotations},
            "preference-metadata": {"job_name": "cloudft-pref-test", "type": "groundTruth/custom",
                                    "human-annotated": "yes", "creation_date": "2026-08-01T12:00:00.000000"}}


def test_collect_reads_acs_passthrough_counts_each_worker_once_and_lists_unreadable_answers(aws):
    cfg = _cfg()
    lines = gt.manifest_lines(_pairs(2), cfg, lambda *_: None)
    aws.put_object(Bucket="sagemaker-labels", Key="answers/w4.json",
                   Body=json.dumps({"preference": {"label": "B is better"}}))
    first = [_ann("w1", "A is better", "clearer"), _ann("w2", "B is better"), _ann("w2", "A is better"),
             _ann("w2", "A is better"), {"workerId": "w3", "annotationData": {"content": "{not json"}},
             {"workerId": "w4", "annotationData": {"s3Uri": "s3://sagemaker-labels/answers/w4.json"}},
             "garbage"]
    second = [_ann("w1", "About the same"), _ann("w2", "Cannot judge / skip"), _ann("w3", "Something else")]
    manifest = "\n".join(json.dumps(_acs_line(x, a)) for x, a in zip(lines, (first, second)))
    pairs, labels, problems = gt.collect_labels(manifest + "\n{broken\n", aws)
    by_pair = {}
    for lab in labels:
        by_pair.setdefault(lab["pair_id"], []).append((lab["annotator"], lab["shown"]))
    assert sorted(by_pair["p-0"]) == [("w1", "A"), ("w2", "A"), ("w4", "B")]  # w2 once: its last answer
    assert sorted(by_pair["p-1"]) == [("w1", "tie"), ("w2", "skip")]
    assert "p-0: worker w2 answered 3 times; counted once (the last answer)" in problems
    assert any(p.startswith("p-0: worker w3: unreadable answer (JSONDecodeError") for p in problems)
    assert any(p.startswith("p-0: worker <no workerId #6>: unreadable answer") for p in problems)
    assert any(p.startswith("p-1: worker w3: unreadable answer") and "unknown category" in p for p in problems)
    assert any(p.startswith("line 3: not JSON") for p in problems)
    assert len(problems) == 5 and [p["pair_id"] for p in pairs] == ["p-0", "p-1"]


def test_consolidation_lambda_survives_bad_input_and_reads_s3_answers(aws):
    handler = gt.handler_module()
    aws.put_object(Bucket="sagemaker-labels", Key="answers/w2.json",
                   Body=json.dumps({"preference": {"label": "A is better"}}))
    payload = [
        {"datasetObjectId": "0", "annotations": [
            _ann("w1", "A is better"), _ann("w1", "B is better"),
            {"workerId": "w2", "annotationData": {"s3Uri": "s3://sagemaker-labels/answers/w2.json"}},
            {"workerId": "w3"}, 17]},
        "not an object",
        {"datasetObjectId": "2", "annotations": None},
    ]
    aws.put_object(Bucket="sagemaker-labels", Key="consolidation/payload.json", Body=json.dumps(payload))
    out = handler.handler(EVENT, None)
    assert [o["datasetObjectId"] for o in out] == ["0", "", "2"]
    first = out[0]["consolidatedAnnotation"]["content"]["preference"]
    assert first["votes_shown"] == {"A": 1, "B": 1, "tie": 0, "skip": 0}  # w1 once (its last answer), w2 from S3
    assert first["unparsed"] == 2 and first["notes"] == ["worker w1 answered 2 times; counted once (the last answer)"]
    assert [a["workerId"] for a in first["answers"]] == ["w1", "w2", "w3", "<no workerId #4>"]
    assert out[2]["consolidatedAnnotation"]["content"]["preference"]["answers"] == []


def test_default_prefix_is_where_the_stacks_role_and_lambda_may_work(tmp_path):
    """Every S3 object a default `label submit` writes and Ground Truth / the Lambda read lies inside what the
    infra stack's execution role and consolidation Lambda are allowed (evaluated on their declared policies)."""
    from infra_fixtures import run_program

    from cloudft.providers.aws.iam_eval import evaluate
    from infra.components.aws_stack import AwsStackSettings, LabelingSettings, build_aws_stack

    (tmp_path / "handler.py").write_text("def handler(event, context):\n    return []\n")
    _, out = run_program(lambda: build_aws_stack(AwsStackSettings(
        name="gt", labeling=LabelingSettings(enabled=True, consolidation_dir=tmp_path))))
    cfg = gt.JobConfig(bucket=out["bucket"], role_arn=ROLE, workteam_arn=TEAM, region=REGION, job_name="cloudft-pref-x")
    req = gt.build_request(cfg, cfg.uri("input.manifest"), cfg.uri(gt.TEMPLATE_NAME))
    output = req["OutputConfig"]["S3OutputPath"] + "cloudft-pref-x/annotations/consolidated-annotation/payload.json"
    role = out["iam_policies"]["execution"]["policies"]
    lam = out["iam_policies"]["consolidation"]["policies"]

    def arn(uri):
        return "arn:aws:s3:::" + uri[len("s3://"):]

    for uri in (cfg.uri("input.manifest"), cfg.uri(gt.TEMPLATE_NAME), output):
        assert evaluate(role, "s3:GetObject", arn(uri)).allowed, uri
    assert evaluate(role, "s3:PutObject", arn(output)).allowed
    assert evaluate(lam, "s3:GetObject", arn(output)).allowed
    old = gt.JobConfig(bucket=out["bucket"], role_arn=ROLE, workteam_arn=TEAM, region=REGION,
                       prefix="cloudft-groundtruth", job_name="x")  # the old default: outside the stack's prefix
    assert not evaluate(role, "s3:GetObject", arn(old.uri("input.manifest"))).allowed


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=12),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                 max_size=4), max_leaves=12)
_ANNOTATION = st.one_of(_JSON, st.fixed_dictionaries({
    "workerId": st.one_of(st.none(), st.sampled_from(["w1", "w2", "w3"])),
    "annotationData": st.one_of(_JSON, st.fixed_dictionaries({"content": st.one_of(_JSON, st.sampled_from(
        ['{"preference": {"label": "A is better"}}', '{"preference": {"label": "nope"}}', "{"]))}))}))


@settings(max_examples=150, deadline=None)
@given(st.lists(_ANNOTATION, max_size=8))
def test_hostile_annotations_never_crash_and_every_worker_is_counted_or_reported(annotations):
    handler = gt.handler_module()
    answers, notes = handler.worker_answers(annotations)
    workers = [a["workerId"] for a in answers]
    assert len(workers) == len(set(workers))  # each worker once
    for a in answers:
        assert a["shown"] in ("A", "B", "tie", "skip") or a.get("error")
    out = handler.handler({"labelAttributeName": "preference", "payload": [{"datasetObjectId": "0",
                                                                           "annotations": annotations}]})
    assert len(out) == 1
    line = json.dumps({"pair_id": "p", "preference": {"annotationsFromAllWorkers": annotations}})
    _, labels, problems = gt.collect_labels(line, None)
    assert len(labels) + sum(p.startswith("p: worker") and "unreadable" in p for p in problems) == len(answers)
