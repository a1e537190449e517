"""Benchmarks of Arks: each `bench/b_<name>.py` measures one figure next to a baseline
measured in the same run, so the ratio, not the absolute number, is what carries across
machines. Run them all with `make bench`, or one with `python -m bench <name>`."""
