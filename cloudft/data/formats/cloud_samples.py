"""The record shapes of the cloud providers' own fine-tuning samples.

- Azure ML text generation (`text_generation_datapreprocess`: `text_key`, `ground_truth_key`; sample input
  {"text": "The meaning of life is", "ground_truth": "being content and living it to the fullest"}):
  https://github.com/Azure/azureml-assets/blob/main/assets/training/finetune_acft_hf_nlp/components/preprocess/
  text_generation/README.md. The model learns to write `ground_truth` after `text`: a prompt and a completion.
- SageMaker JumpStart instruction tuning (Dolly-style `instruction`, `context`, `response`, rendered through a
  `template.json` whose default joins instruction and context): https://docs.aws.amazon.com/sagemaker/latest/dg/
  jumpstart-foundation-models-fine-tuning-instruction-based.html. A custom template.json maps one to one onto a
  templated mapping: `data.columns: {prompt: "...{instruction}...{context}...", completion: " {response}"}`.
"""

from __future__ import annotations

from .alpaca import instruction_format
from .base import SourceFormat, register, text


def convert_text_generation(obj: dict, prompt_only: bool = False) -> dict:
    out = {"prompt": text(obj, "text", empty_reason="empty_prompt")}
    if not (prompt_only and obj.get("ground_truth") in (None, "")):
        out["completion"] = text(obj, "ground_truth")
    return out


register(
    SourceFormat(
        name="azureml_text_generation", canonical="prompt_completion", convert=convert_text_generation,
        required=("text", "ground_truth"), columns={"text": "prompt", "ground_truth": "completion"},
        origin="Azure ML text-generation fine-tuning samples (text_key / ground_truth_key)",
        reference="https://github.com/Azure/azureml-assets/tree/main/assets/training/finetune_acft_hf_nlp",
        example={"text": "The meaning of life is", "ground_truth": " being content and living it to the fullest"},
    ),
    instruction_format(
        "sagemaker_instruction", "context", "response",
        origin="SageMaker JumpStart instruction tuning (Dolly: instruction, context, response, category)",
        reference="https://docs.aws.amazon.com/sagemaker/latest/dg/"
                  "jumpstart-foundation-models-fine-tuning-instruction-based.html",
        example={"instruction": "Summarise the text.", "context": "Cats sleep most of the day.",
                 "response": "Cats sleep a lot.", "category": "summarization"},
    ),
)
