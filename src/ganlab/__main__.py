"""`python -m ganlab` = the `ganlab` command (through the same launcher as the console script).
torchrun re-runs training this way, so the modules loaded (and hence the checkpoint's code
digest) match a `ganlab train` run; under torchrun the launcher runs the command in-process."""

from ganlab.launcher import main

main()
