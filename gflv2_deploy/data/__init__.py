"""data stage of gflv2_deploy (see the package layout in README)."""
