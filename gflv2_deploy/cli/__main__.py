"""``python -m gflv2_deploy.cli ...`` (and ``torchrun ... -m gflv2_deploy.cli train ...``) runs the command line."""

from gflv2_deploy.cli import main

main()
