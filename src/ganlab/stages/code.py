"""Stage `code`: the code manifests, data/code/<command>.txt, one per pipeline command.

Reads the package's source (`src/ganlab`, the stage's one dep); writes, for every stage
command in cli.py, the files it can run and their sha256 (ganlab.runtime.code). Each other
stage depends on its own manifest, so a source edit reruns exactly the stages whose code it
touches. No torch, no MLflow: about a second.
"""

from __future__ import annotations

from ganlab.runtime.code import CODE_DIR, write_manifests


def run_code(echo=print) -> list[str]:
    commands = write_manifests(CODE_DIR)
    echo(f"code: {len(commands)} manifests in {CODE_DIR}/ ({', '.join(commands)})")
    return commands
