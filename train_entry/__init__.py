"""train_entry: the one training program that runs in every container and on every provider.

`python -m train_entry --config run.json` reads a RunConfig (train_entry/config.py) and trains with
transformers/peft/trl. It never imports `cloudft`.
"""

__version__ = "0.1.0"
