"""Errors of the login flows. Every message is for the user: what happened and what to do next.
None contains a token, an authorization code or a raw response body."""

from __future__ import annotations


class LoginError(Exception):
    """A login that cannot finish."""


class LoginTimeout(LoginError):
    """The user did not finish in time."""


class TransientLoginError(LoginError):
    """A network failure or a 5xx: worth another try while polling."""
