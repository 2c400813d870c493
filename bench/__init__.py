"""twinstack benchmarks (``make bench``): absolute figures and ratios against baselines measured
in the same run on the same machine."""
