"""Typed errors, each carrying the exit code that DESIGN.md gives it.

The library raises these; the CLI turns them into one-line messages and exit codes.
They subclass plain ``Exception`` (not click's) so that the torch-free runtime and the
device code depend on nothing but numpy.
"""
from __future__ import annotations


class EdgeSDKError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class UsageError(EdgeSDKError):
    """Bad input from the user: unknown name, wrong option, bad file, wrong feeds."""

    exit_code = 2


class CheckpointError(UsageError):
    """A checkpoint that cannot be loaded as it is: missing/unexpected keys, unsafe pickle."""


class BundleError(UsageError):
    """A bundle that cannot be trusted: missing manifest key, hash mismatch, newer schema."""


class ConversionError(EdgeSDKError):
    """A converter (ONNX or TFLite) failed; the message names the op or module."""

    exit_code = 3


class ValidationError(EdgeSDKError):
    """An exported artifact does not compute what the reference computes."""

    exit_code = 4

    def __init__(self, message: str, report: dict | None = None):
        super().__init__(message)
        self.report = report or {}


class BackendUnavailable(EdgeSDKError):
    """The asked-for backend, provider or device is not available here."""

    exit_code = 5


class MeasurementUnavailable(EdgeSDKError):
    """A measurement was asked for explicitly and cannot be made here."""

    exit_code = 6


class NoSpaceError(UsageError):
    """Not enough free disk space for the bundle (estimated before writing, or ENOSPC while writing)."""


class BundleWarning(UserWarning):
    """Something to know before trusting a bundle's outputs (random weights, artifacts not copied).

    ``edgesdk.load`` warns with it; the CLI prints the same sentences as its first lines instead.
    """
