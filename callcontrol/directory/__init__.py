"""The directory: the admin's users, numbers and routing (used by the CLI and web console)."""

from callcontrol.directory.service import DirectoryService

__all__ = ["DirectoryService"]
