"""gflv2-deploy package."""
