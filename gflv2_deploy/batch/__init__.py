"""batch stage of gflv2_deploy: offline detection over a picture archive (``gflv2-deploy infer``).

``source`` lists the pictures (a folder, a list file or a glob; local paths or object-store URIs) and reads
them; ``shards`` cuts the sorted listing into deterministic shards and reads/writes their Parquet files;
``worker`` decodes and detects batches (the same code in a Ray actor and in this process); ``ray_engine``
runs those on Ray Data; ``run`` ties them together (resume, exactly once, results JSON, summary).
Ray is imported inside functions only: this package imports without it.
"""
