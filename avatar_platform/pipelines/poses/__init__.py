"""Cameras, view bins, avatar templates and the ControlNet conditioning renders (OpenPose, depth)."""
