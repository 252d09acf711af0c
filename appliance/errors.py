"""Errors named by what the caller can do; api/errors.py maps each to dockerd's status.

The engine, images and runtime packages raise these; only api/ turns them into HTTP.
"""


class ApplianceError(Exception):
    """Base class: the message is what the docker CLI prints after 'Error response from daemon:'."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class NotFound(ApplianceError):
    """The named object does not exist (404). Only for a missing object."""


class InvalidParameter(ApplianceError):
    """The request itself is wrong (400)."""


class Conflict(ApplianceError):
    """The request clashes with current state: name in use, container running (409)."""


class Forbidden(ApplianceError):
    """Not allowed in the current state, e.g. removing a network in use (403)."""


class NotModified(ApplianceError):
    """Nothing to do, e.g. starting a running container (304)."""


class Unavailable(ApplianceError):
    """A dependency is not there right now (503)."""


class NotImplementedYet(ApplianceError):
    """A Docker feature this node does not provide (501)."""


class SystemError_(ApplianceError):
    """The node failed doing what was asked: runtime or disk error (500), logged with its cause."""
