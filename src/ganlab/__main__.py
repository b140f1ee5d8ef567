"""`python -m ganlab` = the `ganlab` command. torchrun re-runs training this way, so the
modules loaded (and hence the checkpoint's code digest) match a `ganlab train` run."""

from ganlab.cli import app

app(prog_name="ganlab")
