"""The `cloudft` command line (click + rich). Subcommands load lazily: see main.py."""
