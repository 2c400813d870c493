"""``python -m bench`` (``make bench``): every benchmark, each with its in-run baselines."""

from bench import pipeline, simulation

if __name__ == "__main__":
    pipeline.run()
    simulation.run()
