"""Entry point of cloudft's Azure ML jobs when the spec has secrets: Key Vault → env, then the command.

    python cloudft_launch.py python -m train_entry --config ... (Azure ML starts one per process)
"""

from __future__ import annotations

import os
import sys

from cloudft_keyvault import load_secrets

if __name__ == "__main__":
    names = load_secrets(os.environ)
    print(f"cloudft: resolved {len(names)} secret(s) from Key Vault: {', '.join(names)}", flush=True)
    argv = sys.argv[1:]
    os.execvp(argv[0], argv)
