"""``python -m bench`` (``make bench``): every benchmark, each with its in-run baselines."""

from bench import access, cluster, devices, pipeline, registry, simulation

if __name__ == "__main__":
    registry.run()
    pipeline.run()
    devices.run()
    simulation.run()
    access.run()
    cluster.run()
