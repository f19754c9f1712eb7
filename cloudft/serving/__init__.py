"""Serving a run: which server can serve what a run wrote (compat), the local OpenAI-compatible server, its
endpoint records, and the smoke test every deploy runs.

Light at import: `compat` needs no torch (plan and validate use it); the server modules import torch and
transformers inside their functions.
"""
