"""Thin entry point: ``python cli.py ...`` is the same as the ``gflv2-deploy`` console script."""

from gflv2_deploy.cli import main

if __name__ == "__main__":
    main()
