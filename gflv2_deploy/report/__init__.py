"""HTML reports of compare, eval and bench results: one self-contained page (``gflv2-deploy report``)."""
