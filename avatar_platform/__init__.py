"""avatar-platform: StyleAvatar3D as a Ray-distributed platform (generate → train → registry → serve)."""

__version__ = "0.1.0"
