"""cloudft: fine-tune open LLMs on your own data, on AWS, Azure or this machine, from one job spec."""

__version__ = "0.1.0"
