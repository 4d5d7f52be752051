"""Console administrators: accounts, sign-in sessions, API tokens and the audit log."""

from callcontrol.admins.service import AdminService, SignIn

__all__ = ["AdminService", "SignIn"]
