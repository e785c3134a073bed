"""Running platform commands on a Ray cluster as Ray Jobs (`avatar-platform cluster`).

`jobs.py` submits `python -m avatar_platform.cli.app <command>` through the Ray Jobs API with
the project folder as the job's working dir, and follows, stops and lists those jobs.
"""
