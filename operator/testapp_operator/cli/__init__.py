"""The `kubectl testapp` plugin: see and move TestAppReleases from a shell or a pipeline.

- core.py: pure decisions (names, durations, patches, rollback choice, wait verdicts, exit codes)
- views.py: pure output (records, tables, JSON/YAML, diffs)
- client.py: the API calls, imported only when a command needs the API server
- commands.py: argparse, one function per command, `main` and shell completion

Nothing here imports Kopf or the operator's loop: the plugin installs and starts on its own.
"""

from testapp_operator.cli.commands import complete, main

__all__ = ["complete", "main"]
