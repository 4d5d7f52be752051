"""The directory: the admin's users, numbers and routing (used by the CLI, through services)."""

from callcontrol.directory.service import DirectoryService

__all__ = ["DirectoryService"]
