"""The `avatar-platform` command line: one Typer app, one sub-app or command per area."""
