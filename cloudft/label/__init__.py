"""The human preference loop: candidate answers → pairwise labels (built-in web app or Ground Truth)
→ agreement → a versioned DPO dataset.

Modules: `pairs` (the pairs file), `candidates` (generate answers), `store` (SQLite WAL label store),
`app` (Flask labeling app), `agreement` (votes and inter-annotator agreement), `export` (DPO/KTO dataset),
`groundtruth` (SageMaker Ground Truth jobs). Nothing heavy is imported here.
"""

#: Labels in the original orientation of a pair (after un-swapping what the annotator saw).
CHOICES = ("a", "b", "tie", "skip")


def project_template(*parts: str):
    """A file under the project's `templates/` folder (guidelines, Ground Truth task template, Lambda)."""
    from ..paths import template

    return template(*parts)
