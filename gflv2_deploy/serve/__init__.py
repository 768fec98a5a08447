"""serve stage: Triton Inference Server model repositories, their python-backend models, a local server."""
